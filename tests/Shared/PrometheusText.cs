using System.Globalization;

namespace TransferApi.TestSupport;

/// <summary>Prometheus's text exposition, as /metrics answers it: one sample per line, "name{label="value",…}
/// value".</summary>
public sealed class PrometheusText(string text)
{
    private readonly string[] samples = text.Split('\n').Where(l => l.Length > 0 && l[0] != '#').ToArray();

    private IEnumerable<string> Lines(string series, string[] labels) =>
        samples.Where(l =>
            (
                l.StartsWith(series + "{", StringComparison.Ordinal)
                || l.StartsWith(series + " ", StringComparison.Ordinal)
            ) && labels.All(l.Contains)
        );

    public bool Has(string series) => Lines(series, []).Any();

    /// <summary>The sum of the samples of <paramref name="series"/> whose labels contain every one of <paramref
    /// name="labels"/> (0 when none).</summary>
    public double Sum(string series, params string[] labels) =>
        Lines(series, labels).Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
}
