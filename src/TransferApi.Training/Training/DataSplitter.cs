namespace TransferApi.Training.Training;

/// <summary>Seeded, stratified assignment of images to train and validation.</summary>
public static class DataSplitter
{
    /// <summary>
    /// Honours splits already fixed on the images (e.g. by a zip's train/ and val/ folders); otherwise
    /// moves <paramref name="validationFraction"/> of each class, chosen with <paramref name="seed"/>,
    /// to validation, keeping at least one training image per class.
    /// </summary>
    public static (int[] Train, int[] Validation) Split(IReadOnlyList<LabeledImage> images, double validationFraction, long seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(validationFraction);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(validationFraction, 1.0);
        var train = new List<int>();
        var validation = new List<int>();
        var hasFixedValidation = images.Any(i => i.Split == DataSplit.Validation);
        var random = new Random(unchecked((int)seed ^ (int)(seed >> 32)));
        var byClass = Enumerable.Range(0, images.Count)
            .Where(i => images[i].Split != DataSplit.Test)
            .GroupBy(i => images[i].Label, StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal);
        foreach (var group in byClass)
        {
            if (hasFixedValidation)
            {
                foreach (var i in group) (images[i].Split == DataSplit.Validation ? validation : train).Add(i);
                continue;
            }
            var members = group.ToArray();
            random.Shuffle(members);
            var take = members.Length < 2 || validationFraction == 0 ? 0
                : Math.Clamp((int)Math.Round(members.Length * validationFraction), 1, members.Length - 1);
            validation.AddRange(members[..take]);
            train.AddRange(members[take..]);
        }
        train.Sort();
        validation.Sort();
        return (train.ToArray(), validation.ToArray());
    }
}
