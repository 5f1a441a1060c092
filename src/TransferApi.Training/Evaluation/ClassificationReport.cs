namespace TransferApi.Training.Evaluation;

public sealed record ClassMetrics(string Label, double Precision, double Recall, double F1, int Support);

/// <param name="Counts">Counts[i][j]: images of class Labels[i] predicted as Labels[j].</param>
public sealed record ConfusionMatrix(IReadOnlyList<string> Labels, IReadOnlyList<IReadOnlyList<int>> Counts);

/// <summary>How a trained model does on held-out images: the report of GET /api/training-jobs/{id}/report.</summary>
/// <param name="Split">"test" when the data set has test images, else "validation".</param>
public sealed record ClassificationReport(
    string Split,
    int Images,
    double Accuracy,
    double Top5Accuracy,
    double MacroF1,
    double LogLoss,
    IReadOnlyList<ClassMetrics> PerClass,
    ConfusionMatrix ConfusionMatrix
)
{
    /// <param name="probabilities">One row of class probabilities per image, in label order.</param>
    /// <param name="truth">Each image's true class index.</param>
    public static ClassificationReport Compute(
        string split,
        IReadOnlyList<string> labels,
        IReadOnlyList<float[]> probabilities,
        IReadOnlyList<int> truth
    )
    {
        ArgumentOutOfRangeException.ThrowIfNotEqual(probabilities.Count, truth.Count);
        var classes = labels.Count;
        var counts = new int[classes][];
        for (var c = 0; c < classes; c++)
            counts[c] = new int[classes];
        double logLoss = 0;
        var top5 = 0;
        for (var n = 0; n < truth.Count; n++)
        {
            var p = probabilities[n];
            var predicted = Array.IndexOf(p, p.Max());
            counts[truth[n]][predicted]++;
            logLoss -= Math.Log(Math.Max(p[truth[n]], 1e-15));
            // Ranked by probability, ties broken by class order, like the argmax above.
            var rank = p.Count(q => q > p[truth[n]]) + p.Take(truth[n]).Count(q => q == p[truth[n]]);
            if (rank < 5)
                top5++;
        }
        var perClass = Enumerable
            .Range(0, classes)
            .Select(c =>
            {
                var truePositives = counts[c][c];
                var predictedAs = Enumerable.Range(0, classes).Sum(t => counts[t][c]);
                var support = counts[c].Sum();
                var precision = predictedAs == 0 ? 0 : truePositives / (double)predictedAs;
                var recall = support == 0 ? 0 : truePositives / (double)support;
                var f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
                return new ClassMetrics(labels[c], precision, recall, f1, support);
            })
            .ToList();
        var total = Math.Max(1, truth.Count);
        return new ClassificationReport(
            split,
            truth.Count,
            Enumerable.Range(0, classes).Sum(c => counts[c][c]) / (double)total,
            top5 / (double)total,
            perClass.Average(c => c.F1),
            logLoss / total,
            perClass,
            new ConfusionMatrix(labels, counts)
        );
    }
}
