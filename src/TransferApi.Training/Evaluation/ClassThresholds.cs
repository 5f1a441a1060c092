namespace TransferApi.Training.Evaluation;

/// <param name="Threshold">A label is answered when its probability is at least this.</param>
/// <param name="Precision">Share of the images answered with the label that have it (1 when none is).</param>
/// <param name="Recall">Share of the images with the label that are answered with it.</param>
public sealed record ThresholdPoint(double Threshold, double Precision, double Recall);

/// <summary>One class's precision and recall over probability thresholds (one class against the rest).</summary>
/// <param name="Recommended">The threshold to use for this class (see <see cref="ClassThresholds.Compute"/>).</param>
/// <param name="Precision">Precision at <paramref name="Recommended"/>.</param>
/// <param name="Recall">Recall at <paramref name="Recommended"/>.</param>
/// <param name="Curve">Precision and recall at thresholds 0, 0.01, …, 1.</param>
public sealed record ClassThreshold(
    string Label,
    double Recommended,
    double Precision,
    double Recall,
    IReadOnlyList<ThresholdPoint> Curve
);

public static class ClassThresholds
{
    /// <summary>A class without positive images gets the plain majority rule.</summary>
    public const double Fallback = 0.5;

    /// <summary>
    /// Per class: the threshold with the best F1, or, with <paramref name="targetPrecision"/>, the lowest one whose
    /// precision reaches it (the most recall at that precision; the most precise one when none does). Among
    /// thresholds that answer the same images the midpoint is recommended, so a new image near the boundary is not
    /// decided by one held-out image's exact probability.
    /// </summary>
    public static IReadOnlyList<ClassThreshold> Compute(
        IReadOnlyList<string> labels,
        IReadOnlyList<float[]> probabilities,
        IReadOnlyList<int> truth,
        double? targetPrecision
    ) =>
        labels
            .Select(
                (label, c) =>
                {
                    var scores = probabilities.Select(p => (double)p[c]).ToArray();
                    var positive = truth.Select(t => t == c).ToArray();
                    return ForClass(label, scores, positive, targetPrecision);
                }
            )
            .ToList();

    private static ClassThreshold ForClass(string label, double[] scores, bool[] positive, double? target)
    {
        var positives = positive.Count(p => p);
        var curve = Enumerable.Range(0, 101).Select(step => Point(step / 100.0, scores, positive, positives)).ToList();
        if (positives == 0)
            return new ClassThreshold(label, Fallback, 0, 0, curve);
        // Candidates: each distinct score, highest first; between two of them the answered images do not change.
        var distinct = scores.Distinct().OrderDescending().ToArray();
        var candidates = distinct.Select(s => Point(s, scores, positive, positives)).ToArray();
        int chosen;
        if (target is { } precision)
        {
            var reaching = Enumerable.Range(0, candidates.Length).Where(i => candidates[i].Precision >= precision);
            chosen = reaching.Any()
                ? reaching.MaxBy(i => (candidates[i].Recall, -i))
                : Enumerable.Range(0, candidates.Length).MaxBy(i => (candidates[i].Precision, candidates[i].Recall));
        }
        else
            chosen = Enumerable.Range(0, candidates.Length).MaxBy(i => (F1(candidates[i]), -i));
        var lowerScore = chosen + 1 < distinct.Length ? distinct[chosen + 1] : 0;
        var recommended = (distinct[chosen] + lowerScore) / 2;
        return new ClassThreshold(label, recommended, candidates[chosen].Precision, candidates[chosen].Recall, curve);
    }

    private static ThresholdPoint Point(double threshold, double[] scores, bool[] positive, int positives)
    {
        var (truePositives, answered) = (0, 0);
        for (var n = 0; n < scores.Length; n++)
        {
            if (scores[n] < threshold)
                continue;
            answered++;
            if (positive[n])
                truePositives++;
        }
        return new ThresholdPoint(
            threshold,
            answered == 0 ? 1 : truePositives / (double)answered,
            positives == 0 ? 0 : truePositives / (double)positives
        );
    }

    private static double F1(ThresholdPoint point) =>
        point.Precision + point.Recall == 0 ? 0 : 2 * point.Precision * point.Recall / (point.Precision + point.Recall);
}
