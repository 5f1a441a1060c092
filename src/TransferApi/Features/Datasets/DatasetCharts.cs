using ScottPlot;

namespace TransferApi.Features.Datasets;

/// <summary>PNG charts of a data set.</summary>
public static class DatasetCharts
{
    /// <param name="Label">Its label (null: unlabeled).</param>
    /// <param name="LabelIssue">Its label looks wrong (the health report's label issues).</param>
    /// <param name="Outlier">It is unlike every other image.</param>
    public sealed record MapPoint(double X, double Y, string? Label, bool LabelIssue, bool Outlier);

    /// <summary>Classes beyond this share the legend's last entry (colours repeat past the palette anyway).</summary>
    private const int MaxLegendClasses = 20;

    public static byte[] EmbeddingMap(
        IReadOnlyList<MapPoint> points,
        (double X, double Y) explainedVariance,
        string backbone
    )
    {
        var plot = new Plot();
        var classes = points
            .Where(p => p.Label is not null)
            .Select(p => p.Label!)
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal)
            .ToList();
        // Ten strong colours while they suffice; the twenty-colour palette pairs each with a pale twin.
        IPalette palette =
            classes.Count <= 10 ? new ScottPlot.Palettes.Category10() : new ScottPlot.Palettes.Category20();
        for (var c = 0; c < classes.Count; c++)
        {
            var members = points.Where(p => p.Label == classes[c]).ToList();
            var markers = plot.Add.Markers(
                members.Select(p => p.X).ToArray(),
                members.Select(p => p.Y).ToArray(),
                MarkerShape.FilledCircle,
                6,
                palette.GetColor(c).WithAlpha(0.75)
            );
            if (c < MaxLegendClasses)
                markers.LegendText = $"{classes[c]} ({members.Count})";
        }
        var unlabeled = points.Where(p => p.Label is null).ToList();
        if (unlabeled.Count > 0)
        {
            var markers = plot.Add.Markers(
                unlabeled.Select(p => p.X).ToArray(),
                unlabeled.Select(p => p.Y).ToArray(),
                MarkerShape.OpenCircle,
                6,
                Colors.Gray
            );
            markers.LegendText = $"unlabeled ({unlabeled.Count})";
        }
        Mark(plot, points.Where(p => p.LabelIssue).ToList(), MarkerShape.Eks, Colors.Black, "label issue");
        Mark(plot, points.Where(p => p.Outlier).ToList(), MarkerShape.OpenTriangleUp, Colors.Red, "outlier");
        plot.Title(
            $"{points.Count} images by their {backbone} features"
                + (classes.Count > MaxLegendClasses ? $" ({classes.Count} classes, {MaxLegendClasses} in legend)" : "")
        );
        plot.XLabel($"first principal component ({explainedVariance.X:P0} of variance)");
        plot.YLabel($"second principal component ({explainedVariance.Y:P0} of variance)");
        // Beside the map, not over it: the points reach every corner.
        plot.ShowLegend(Edge.Right);
        return plot.GetImageBytes(1120, 720, ImageFormat.Png);
    }

    private static void Mark(Plot plot, List<MapPoint> points, MarkerShape shape, Color color, string legend)
    {
        if (points.Count == 0)
            return;
        var markers = plot.Add.Markers(
            points.Select(p => p.X).ToArray(),
            points.Select(p => p.Y).ToArray(),
            shape,
            11,
            color
        );
        markers.LegendText = $"{legend} ({points.Count})";
    }
}
