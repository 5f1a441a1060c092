namespace TransferApi.Training.Evaluation;

/// <summary>One model's answer for one evaluated image.</summary>
/// <param name="Probability">Its (calibrated) probability of <paramref name="Predicted"/>.</param>
/// <param name="Loss">-log of its probability of the true label.</param>
public sealed record ScoredImage(string Label, string Predicted, double Probability, double Loss);

public sealed record ClassF1(string Label, double F1, int Support);

public sealed record ModelScores(
    double Accuracy,
    double MacroF1,
    double LogLoss,
    double ExpectedCalibrationError,
    IReadOnlyList<ClassF1> PerClass
);

/// <param name="First">Index of the first model.</param>
/// <param name="Second">Index of the second.</param>
/// <param name="MoreAccurate">Index of the more accurate one when the difference is significant at 5 %.</param>
public sealed record PairwiseTest(int First, int Second, McNemarResult Test, int? MoreAccurate);

/// <param name="Disagreements">Indices of the images on which the models' predictions differ.</param>
public sealed record ComparisonResult(
    IReadOnlyList<ModelScores> Models,
    IReadOnlyList<PairwiseTest> Pairs,
    IReadOnlyList<int> Disagreements
);

/// <summary>
/// Models scored side by side on the same images (each list in the same image order): accuracy, macro F1, log
/// loss, calibration error, per-class F1, where they disagree, and McNemar's exact test for every pair.
/// </summary>
public static class ModelComparison
{
    public const double Significance = 0.05;

    public static ComparisonResult Compare(IReadOnlyList<IReadOnlyList<ScoredImage>> models)
    {
        if (models.Count < 2 || models.Any(m => m.Count != models[0].Count))
            throw new ArgumentException("Give two or more models scored on the same images.", nameof(models));
        var scores = models.Select(Score).ToList();
        var pairs = new List<PairwiseTest>();
        for (var a = 0; a < models.Count; a++)
        for (var b = a + 1; b < models.Count; b++)
        {
            var test = McNemar.Test(Right(models[a]), Right(models[b]));
            int? better =
                test.PValue >= Significance ? null
                : test.OnlyFirstRight > test.OnlySecondRight ? a
                : b;
            pairs.Add(new PairwiseTest(a, b, test, better));
        }
        var disagreements = Enumerable
            .Range(0, models[0].Count)
            .Where(i => models.Select(m => m[i].Predicted).Distinct(StringComparer.Ordinal).Count() > 1)
            .ToList();
        return new ComparisonResult(scores, pairs, disagreements);
    }

    private static List<bool> Right(IReadOnlyList<ScoredImage> images) =>
        images.Select(i => i.Label == i.Predicted).ToList();

    private static ModelScores Score(IReadOnlyList<ScoredImage> images)
    {
        var labels = images.Select(i => i.Label).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal);
        var perClass = labels
            .Select(label =>
            {
                var tp = images.Count(i => i.Label == label && i.Predicted == label);
                var fp = images.Count(i => i.Label != label && i.Predicted == label);
                var fn = images.Count(i => i.Label == label && i.Predicted != label);
                return new ClassF1(label, 2.0 * tp / Math.Max(1, 2 * tp + fp + fn), tp + fn);
            })
            .ToList();
        return new ModelScores(
            images.Count(i => i.Label == i.Predicted) / (double)Math.Max(1, images.Count),
            perClass.Count == 0 ? 0 : perClass.Average(c => c.F1),
            images.Count == 0 ? 0 : images.Average(i => i.Loss),
            TemperatureScaling.ExpectedCalibrationError(
                images.Select(i => (i.Probability, i.Label == i.Predicted)).ToList()
            ),
            perClass
        );
    }
}
