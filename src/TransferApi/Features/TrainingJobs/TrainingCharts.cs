using ScottPlot;
using TransferApi.Persistence;
using TransferApi.Training.Evaluation;

namespace TransferApi.Features.TrainingJobs;

/// <summary>PNG charts of a training job: learning curves per epoch and the confusion matrix of its report.</summary>
public static class TrainingCharts
{
    public static byte[] LearningCurves(IReadOnlyList<TrainingMetric> metrics, int? bestEpoch)
    {
        var plot = new Plot();
        double[] epochs = metrics.Select(m => (double)m.Epoch).ToArray();
        var train = plot.Add.Scatter(epochs, metrics.Select(m => m.TrainLoss).ToArray());
        train.LegendText = "train loss";
        var withValidation = metrics.Where(m => m.ValLoss is not null).ToList();
        if (withValidation.Count > 0)
        {
            var valEpochs = withValidation.Select(m => (double)m.Epoch).ToArray();
            var valLoss = plot.Add.Scatter(valEpochs, withValidation.Select(m => m.ValLoss!.Value).ToArray());
            valLoss.LegendText = "validation loss";
            var accuracy = plot.Add.Scatter(valEpochs, withValidation.Select(m => m.ValAccuracy ?? 0).ToArray());
            accuracy.LegendText = "validation accuracy (right axis)";
            accuracy.LinePattern = LinePattern.Dashed;
            accuracy.Axes.YAxis = plot.Axes.Right;
            plot.Axes.Right.Label.Text = "accuracy";
            plot.Axes.SetLimitsY(0, 1, plot.Axes.Right);
        }
        if (bestEpoch is { } best)
        {
            var line = plot.Add.VerticalLine(best);
            line.LegendText = $"kept epoch {best}";
            line.LinePattern = LinePattern.Dotted;
        }
        plot.Title("Learning curves");
        plot.XLabel("epoch");
        plot.YLabel("cross-entropy loss");
        plot.ShowLegend(Alignment.UpperRight);
        return plot.GetImageBytes(900, 520, ImageFormat.Png);
    }

    public static byte[] ConfusionMatrix(ClassificationReport report)
    {
        var labels = report.ConfusionMatrix.Labels;
        var n = labels.Count;
        var counts = new double[n, n];
        for (var t = 0; t < n; t++)
        for (var p = 0; p < n; p++)
            counts[t, p] = report.ConfusionMatrix.Counts[t][p];
        var plot = new Plot();
        var heatmap = plot.Add.Heatmap(counts);
        // Blues runs dark to light; reversed, the busiest cells are the darkest.
        heatmap.Colormap = new ScottPlot.Colormaps.Blues().Reversed();
        plot.Add.ColorBar(heatmap);
        var max = Math.Max(1, report.ConfusionMatrix.Counts.SelectMany(r => r).Max());
        for (var t = 0; t < n; t++)
        for (var p = 0; p < n; p++)
        {
            // Heatmap row 0 is drawn at the top: true class t sits at y = n - 1 - t.
            var text = plot.Add.Text(
                report.ConfusionMatrix.Counts[t][p].ToString(System.Globalization.CultureInfo.InvariantCulture),
                p,
                n - 1 - t
            );
            text.Alignment = Alignment.MiddleCenter;
            text.LabelFontColor = report.ConfusionMatrix.Counts[t][p] > max / 2 ? Colors.White : Colors.Black;
            text.LabelFontSize = n > 12 ? 9 : 14;
        }
        double[] positions = Enumerable.Range(0, n).Select(i => (double)i).ToArray();
        plot.Axes.Bottom.SetTicks(positions, labels.ToArray());
        plot.Axes.Left.SetTicks(positions, labels.Reverse().ToArray());
        plot.XLabel("predicted");
        plot.YLabel("true");
        plot.Title($"Confusion matrix ({report.Split}, {report.Images} images, accuracy {report.Accuracy:P1})");
        var side = Math.Clamp(120 + 60 * n, 420, 1600);
        return plot.GetImageBytes(side + 120, side, ImageFormat.Png);
    }
}
