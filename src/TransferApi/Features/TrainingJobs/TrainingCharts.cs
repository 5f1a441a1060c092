using ScottPlot;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training;
using TransferApi.Training.Evaluation;
using TransferApi.Training.Tuning;

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

    /// <summary>
    /// The recipe search: every candidate's cross-validated score with its spread over the folds (one bar each, best
    /// at the top), coloured by kind (linear probe, mini-batch linear, MLP), the chosen one in red.
    /// </summary>
    public static byte[] Tuning(TuningResult search)
    {
        var lowerIsBetter = search.Metric == TuningMetric.LogLoss;
        var order = Enumerable
            .Range(0, search.Candidates.Count)
            .OrderBy(i => lowerIsBetter ? search.Candidates[i].Score : -search.Candidates[i].Score)
            .ToList();
        var palette = new ScottPlot.Palettes.Category10();
        (string Kind, Color Colour)[] kinds =
        [
            ("linear probe (L-BFGS)", palette.GetColor(0)),
            ("linear, mini-batch", palette.GetColor(2)),
            ("MLP", palette.GetColor(4)),
            ("chosen", Colors.Red),
        ];
        (string Kind, Color Colour) KindOf(HeadRecipe r) =>
            kinds[
                r.Optimizer == OptimizerKind.Lbfgs ? 0
                : r.Head == HeadKind.Linear ? 1
                : 2
            ];
        var plot = new Plot();
        var bars = order
            .Select(
                (candidate, row) =>
                {
                    var c = search.Candidates[candidate];
                    var chosen = candidate == search.Chosen;
                    return new Bar
                    {
                        // Best at the top: rows count down from the number of candidates.
                        Position = order.Count - 1 - row,
                        Value = c.Score,
                        Error = c.Std,
                        FillColor = chosen ? Colors.Red : KindOf(c.Recipe).Colour,
                        Label = c.Score.ToString("F3", System.Globalization.CultureInfo.InvariantCulture),
                    };
                }
            )
            .ToList();
        var series = plot.Add.Bars(bars);
        series.Horizontal = true;
        series.ValueLabelStyle.FontSize = 10;
        plot.Axes.Left.SetTicks(
            order.Select((_, row) => (double)(order.Count - 1 - row)).ToArray(),
            order.Select(i => Describe(search.Candidates[i].Recipe)).ToArray()
        );
        plot.Axes.Left.TickLabelStyle.FontSize = 11;
        foreach (var (kind, colour) in kinds)
            plot.Legend.ManualItems.Add(new LegendItem { LabelText = kind, FillColor = colour });
        // The best, shortest bars are at the top: the legend sits beside them.
        plot.ShowLegend(Alignment.UpperRight);
        var metric = search.Metric switch
        {
            TuningMetric.LogLoss => "log loss (lower is better)",
            TuningMetric.Accuracy => "accuracy (higher is better)",
            _ => "macro F1 (higher is better)",
        };
        plot.Title(
            $"Recipe search: {search.Candidates.Count} candidates, {search.Folds}-fold CV on the training images, "
                + $"{search.SecondsUsed:F1} s{(search.BudgetExhausted ? " (budget ran out)" : "")}"
        );
        plot.XLabel($"cross-validated {metric}, whiskers ±1 fold std");
        plot.Axes.SetLimitsX(0, bars.Max(b => b.Value + b.Error) * 1.15);
        return plot.GetImageBytes(1100, Math.Clamp(140 + 28 * order.Count, 420, 2400), ImageFormat.Png);
    }

    /// <summary>A candidate's recipe in a few words.</summary>
    private static string Describe(HeadRecipe r)
    {
        var decay = r.WeightDecay > 0 ? $" wd {r.WeightDecay:G3}" : "";
        var text =
            r.Optimizer == OptimizerKind.Lbfgs
                ? $"probe L2 {r.WeightDecay:G3}"
                : $"{r.Head} {r.Optimizer} lr {r.LearningRate:G3}{decay}, {r.Epochs} ep";
        if (r.LabelSmoothing > 0)
            text += $", smoothing {r.LabelSmoothing:G2}";
        if (r.ClassWeighted)
            text += ", class weights";
        return text;
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

    /// <summary>
    /// Reliability diagram of the report's images: per confidence bin, the share classified correctly against the
    /// mean calibrated confidence; a calibrated model's bars follow the diagonal.
    /// </summary>
    public static byte[] Reliability(IReadOnlyList<EvaluatedImageRow> images, Calibration? calibration, string split)
    {
        var bins = TemperatureScaling.Bins;
        var (count, correct, confidence) = (new int[bins], new double[bins], new double[bins]);
        foreach (var image in images)
        {
            var bin = Math.Min(bins - 1, (int)(image.Probability * bins));
            count[bin]++;
            confidence[bin] += image.Probability;
            correct[bin] += image.Label == image.Predicted ? 1 : 0;
        }
        var plot = new Plot();
        var used = Enumerable.Range(0, bins).Where(b => count[b] > 0).ToList();
        var bars = plot.Add.Bars(
            used.Select(b => new Bar
                {
                    Position = (b + 0.5) / bins,
                    Value = correct[b] / count[b],
                    Size = 1.0 / bins * 0.9,
                    Label = count[b].ToString(System.Globalization.CultureInfo.InvariantCulture),
                })
                .ToList()
        );
        bars.LegendText = "accuracy per confidence bin (images above each bar)";
        bars.ValueLabelStyle.FontSize = 11;
        var gaps = plot.Add.Scatter(
            used.Select(b => confidence[b] / count[b]).ToArray(),
            used.Select(b => correct[b] / count[b]).ToArray()
        );
        gaps.LegendText = "mean confidence of the bin";
        gaps.LineWidth = 0;
        gaps.MarkerSize = 8;
        var diagonal = plot.Add.Line(0, 0, 1, 1);
        diagonal.LegendText = "perfect calibration";
        diagonal.LinePattern = LinePattern.Dashed;
        diagonal.Color = Colors.Gray;
        var ece = used.Sum(b => Math.Abs(correct[b] - confidence[b])) / Math.Max(1, images.Count);
        var fitted = calibration is null
            ? "not calibrated (too few images)"
            : $"temperature {calibration.Temperature:F2} ({calibration.Method}: ECE "
                + $"{calibration.ExpectedCalibrationErrorBefore:F3} -> {calibration.ExpectedCalibrationErrorAfter:F3})";
        plot.Title($"Reliability on {images.Count} {split} images: ECE {ece:F3}\n{fitted}");
        plot.XLabel("confidence (calibrated probability of the predicted label)");
        plot.YLabel("accuracy");
        plot.Axes.SetLimits(0, 1, 0, 1.08);
        plot.ShowLegend(Alignment.UpperLeft);
        return plot.GetImageBytes(820, 640, ImageFormat.Png);
    }

    /// <summary>Each class's precision against recall over thresholds, its recommended threshold marked.</summary>
    public static byte[] PrecisionRecall(ThresholdReport thresholds)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        for (var c = 0; c < thresholds.Classes.Count; c++)
        {
            var item = thresholds.Classes[c];
            var color = palette.GetColor(c);
            var curve = plot.Add.Scatter(
                item.Curve.Select(p => p.Recall).ToArray(),
                item.Curve.Select(p => p.Precision).ToArray()
            );
            curve.Color = color;
            curve.MarkerSize = 0;
            curve.LegendText = item.Label;
            var chosen = plot.Add.Marker(item.Recall, item.Precision);
            chosen.Color = color;
            chosen.Size = 12;
            chosen.Shape = MarkerShape.FilledDiamond;
            chosen.LegendText = $"{item.Label}: recommended {item.Recommended:F3}";
        }
        var goal = thresholds.TargetPrecision is { } target ? $"precision at least {target:P0}" : "best F1";
        plot.Title($"Precision-recall per class ({thresholds.Split})\nrecommended threshold (diamond): {goal}");
        plot.XLabel("recall");
        plot.YLabel("precision");
        plot.Axes.SetLimits(0, 1.02, 0, 1.05);
        plot.ShowLegend(Alignment.LowerLeft);
        return plot.GetImageBytes(820, 640, ImageFormat.Png);
    }

    /// <summary>One image of a contact sheet: its thumbnail and its outcome.</summary>
    public sealed record SheetImage(byte[] Thumbnail, EvaluatedImageRow Outcome);

    /// <summary>
    /// A contact sheet of the report's worst images, worst first: each thumbnail with its true label, the predicted
    /// label and its calibrated probability (red when wrong), and its loss.
    /// </summary>
    public static byte[] TopLosses(IReadOnlyList<SheetImage> images, string split)
    {
        const int columns = 4;
        const int cellWidth = 240,
            cellHeight = 230;
        var rows = Math.Max(1, (images.Count + columns - 1) / columns);
        var plot = new Plot();
        plot.HideAxesAndGrid();
        // One coordinate unit per pixel, y growing downwards by row.
        plot.Axes.SetLimits(0, columns * cellWidth, rows * cellHeight, 0);
        for (var i = 0; i < images.Count; i++)
        {
            var (column, row) = (i % columns, i / columns);
            var (left, top) = (column * cellWidth, row * cellHeight);
            var outcome = images[i].Outcome;
            var wrong = outcome.Label != outcome.Predicted;
            plot.Add.ImageMarker(
                new Coordinates(left + cellWidth / 2.0, top + 8 + Thumbnails.Side / 2.0),
                new ScottPlot.Image(images[i].Thumbnail)
            );
            var caption = plot.Add.Text(
                $"#{i + 1} true {outcome.Label}\npredicted {outcome.Predicted} {outcome.Probability:P0}\n"
                    + $"loss {outcome.Loss:F2}"
                    + (outcome.Novelty is { } novelty ? $", novelty {novelty:F2}" : ""),
                left + cellWidth / 2.0,
                top + 16 + Thumbnails.Side
            );
            caption.Alignment = Alignment.UpperCenter;
            caption.LabelFontSize = 13;
            caption.LabelFontColor = wrong ? Colors.DarkRed : Colors.DarkGreen;
        }
        plot.Title(
            images.Count == 0
                ? $"No {split} images were evaluated"
                : $"The {images.Count} {split} images with the highest loss (red: misclassified)"
        );
        return plot.GetImageBytes(columns * cellWidth, rows * cellHeight + 60, ImageFormat.Png);
    }
}
