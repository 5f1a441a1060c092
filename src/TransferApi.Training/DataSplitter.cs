namespace TransferApi.Training;

/// <summary>Shares of each class held out for validation and test; the rest trains.</summary>
public sealed record SplitFractions(double Validation, double Test)
{
    public static SplitFractions Default { get; } = new(0.2, 0);

    /// <summary>Null when valid, else the field at fault and what is wrong.</summary>
    public (string Field, string Message)? Problem =>
        !(Validation >= 0 && Validation < 1)
            ? ("validationFraction", "validationFraction must be at least 0 and below 1.")
        : !(Test >= 0 && Test < 1) ? ("testFraction", "testFraction must be at least 0 and below 1.")
        : Validation + Test > 0.9
            ? ("testFraction", "validationFraction + testFraction must leave at least 10% for training.")
        : null;
}

/// <summary>Seeded, stratified assignment of images to train, validation and test.</summary>
public static class DataSplitter
{
    /// <summary>
    /// Splits each class separately (so every split keeps the class proportions): its members, in the order
    /// given, are shuffled with <paramref name="seed"/>; the first share goes to validation, the next to test,
    /// the rest to train. A class keeps at least one training image. Same input, same seed, same answer.
    /// </summary>
    /// <param name="groups">
    /// Optional group of each image (near-duplicates): a group goes to one split whole, counted as one member of the
    /// class of its first image. Without groups (or with every group a single image) the answer is the same.
    /// </param>
    public static DataSplit[] Assign(
        IReadOnlyList<string> labels,
        SplitFractions fractions,
        long seed,
        IReadOnlyList<int>? groups = null
    )
    {
        if (fractions.Problem is { } problem)
            throw new ArgumentException(problem.Message, nameof(fractions));
        var result = new DataSplit[labels.Count];
        var random = new Random(unchecked((int)seed ^ (int)(seed >> 32)));
        // Each unit is a group's images in the order given; its class is its first image's.
        var units = Enumerable
            .Range(0, labels.Count)
            .GroupBy(i => groups?[i] ?? -1 - i)
            .Select(g => g.ToArray())
            .OrderBy(u => u[0])
            .ToList();
        var byClass = units
            .GroupBy(u => labels[u[0]], StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal);
        foreach (var group in byClass)
        {
            var members = group.ToArray();
            random.Shuffle(members);
            var n = members.Length;
            var validation = Share(n, fractions.Validation, n - 1);
            var test = Share(n, fractions.Test, n - 1 - validation);
            for (var k = 0; k < n; k++)
                foreach (var image in members[k])
                    result[image] =
                        k < validation ? DataSplit.Validation
                        : k < validation + test ? DataSplit.Test
                        : DataSplit.Train;
        }
        return result;
    }

    /// <summary>round(n x fraction), at least 1 when the fraction is positive, never more than <paramref
    /// name="available"/>.</summary>
    private static int Share(int n, double fraction, int available) =>
        fraction <= 0 || available <= 0 ? 0 : Math.Clamp((int)Math.Round(n * fraction), 1, available);

    /// <summary>
    /// The train and validation images of a training run. Splits stored on the images are honoured; when no
    /// image is marked validation, <paramref name="validationFraction"/> of each class (seeded) is held out.
    /// Test images never train or validate.
    /// </summary>
    public static (int[] Train, int[] Validation) Split(
        IReadOnlyList<LabeledImage> images,
        double validationFraction,
        long seed
    )
    {
        var candidates = Enumerable.Range(0, images.Count).Where(i => images[i].Split != DataSplit.Test).ToArray();
        DataSplit[] splits;
        if (images.Any(i => i.Split == DataSplit.Validation))
            splits = candidates
                .Select(i => images[i].Split == DataSplit.Validation ? DataSplit.Validation : DataSplit.Train)
                .ToArray();
        else
            splits = Assign(
                candidates.Select(i => images[i].Label).ToList(),
                new SplitFractions(validationFraction, 0),
                seed
            );
        var train = candidates.Where((_, k) => splits[k] == DataSplit.Train).ToArray();
        var validation = candidates.Where((_, k) => splits[k] == DataSplit.Validation).ToArray();
        return (train, validation);
    }
}
