namespace TransferApi.Training.Health;

/// <summary>An image whose given label the out-of-fold model finds improbable.</summary>
/// <param name="Image">Index into the probabilities given.</param>
/// <param name="Label">Its given class.</param>
/// <param name="SuggestedLabel">The class the model confidently gives it instead.</param>
/// <param name="Confidence">The model's probability of <paramref name="SuggestedLabel"/>.</param>
/// <param name="SelfConfidence">The model's probability of the given label (lower: more suspicious).</param>
public sealed record LabelIssue(int Image, int Label, int SuggestedLabel, double Confidence, double SelfConfidence);

/// <summary>
/// Confident learning (Northcutt, Jiang and Chuang, 2021), as cleanlab's default filter does it: a class's
/// threshold is the mean probability the model gives it on the images labelled with it; an image counts towards
/// the confident joint at (given label, the most probable class whose probability reaches that class's
/// threshold); each row of the joint is scaled to the number of images with that label (images reaching no
/// threshold would otherwise go uncounted); for each off-diagonal cell (i, j), the images labelled i with the largest
/// margin
/// p(j) - p(i), as many as the cell counts, are the label issues ("prune by noise rate"), keeping only those the
/// model finds more probable as j than as i. Most suspicious first: the lowest probability of the given label.
/// </summary>
public static class LabelIssues
{
    /// <param name="probabilities">Out-of-fold class probabilities of every image: a model that never saw it.</param>
    /// <param name="labels">Each image's given class.</param>
    public static IReadOnlyList<LabelIssue> Find(IReadOnlyList<float[]> probabilities, IReadOnlyList<int> labels)
    {
        ArgumentOutOfRangeException.ThrowIfNotEqual(probabilities.Count, labels.Count);
        if (probabilities.Count == 0)
            return [];
        var classes = probabilities[0].Length;
        var thresholds = Enumerable
            .Range(0, classes)
            .Select(c =>
            {
                var own = Enumerable.Range(0, labels.Count).Where(n => labels[n] == c).ToList();
                return own.Count == 0 ? 1.0 : own.Average(n => probabilities[n][c]);
            })
            .ToArray();
        var joint = new int[classes, classes];
        for (var n = 0; n < labels.Count; n++)
            if (ConfidentClass(probabilities[n], thresholds) is { } confident)
                joint[labels[n], confident]++;
        var issues = new List<LabelIssue>();
        for (var given = 0; given < classes; given++)
        {
            var counted = Enumerable.Range(0, classes).Sum(c => joint[given, c]);
            var labelled = labels.Count(l => l == given);
            for (var other = 0; other < classes; other++)
            {
                var toPrune = counted == 0 ? 0 : (int)Math.Round(joint[given, other] * (double)labelled / counted);
                if (given == other || toPrune == 0)
                    continue;
                issues.AddRange(
                    Enumerable
                        .Range(0, labels.Count)
                        .Where(n => labels[n] == given)
                        .OrderByDescending(n => probabilities[n][other] - probabilities[n][given])
                        .ThenBy(n => n)
                        .Take(toPrune)
                        .Where(n => probabilities[n][other] > probabilities[n][given])
                        .Select(n => new LabelIssue(n, given, other, probabilities[n][other], probabilities[n][given]))
                );
            }
        }
        // An image pruned for two other classes is one issue: the more probable suggestion.
        return issues
            .GroupBy(i => i.Image)
            .Select(g => g.MaxBy(i => i.Confidence)!)
            .OrderBy(i => i.SelfConfidence)
            .ThenBy(i => i.Image)
            .ToList();
    }

    private static int? ConfidentClass(float[] probabilities, double[] thresholds)
    {
        int? best = null;
        for (var c = 0; c < probabilities.Length; c++)
            if (probabilities[c] >= thresholds[c] && (best is null || probabilities[c] > probabilities[best.Value]))
                best = c;
        return best;
    }
}
