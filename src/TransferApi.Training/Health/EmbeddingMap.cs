using static TorchSharp.torch;

namespace TransferApi.Training.Health;

/// <summary>Images placed on a plane by their features.</summary>
/// <param name="Points">Each image's coordinates, in the order given.</param>
/// <param name="ExplainedVariance">Share of the features' variance each axis shows.</param>
public sealed record EmbeddingProjection(
    IReadOnlyList<(float X, float Y)> Points,
    (double X, double Y) ExplainedVariance
);

/// <summary>
/// A 2-D map of a data set: principal component analysis of its unit-length features (the geometry near-duplicates,
/// outliers and the head see). Linear and deterministic, so the same data set draws the same map every time, and a
/// few milliseconds for thousands of images.
/// </summary>
public static class EmbeddingMap
{
    public static EmbeddingProjection Project(Tensor features)
    {
        var count = (int)features.shape[0];
        if (count == 0)
            return new EmbeddingProjection([], (0, 0));
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        var unit = nn.functional.normalize(features.to_type(ScalarType.Float64), p: 2, dim: 1);
        var centred = unit - unit.mean([0], keepdim: true);
        var covariance = centred.T.matmul(centred) / Math.Max(1, count - 1);
        var (values, vectors) = linalg.eigh(covariance);
        var dimensions = (int)values.shape[0];
        // eigh sorts ascending: the last two columns are the principal axes. Each axis points so that its largest
        // component is positive, so the map does not flip between runs.
        var axes = vectors.narrow(1, dimensions - 2, 2).flip(1);
        var largest = axes.abs().argmax(0);
        var signs = axes.gather(0, largest.unsqueeze(0)).sign();
        var projected = centred.matmul(axes * signs).to_type(ScalarType.Float32).contiguous();
        var flat = projected.data<float>().ToArray();
        var total = values.sum().item<double>();
        var top = values.narrow(0, dimensions - 2, 2).data<double>().ToArray();
        return new EmbeddingProjection(
            Enumerable.Range(0, count).Select(i => (flat[2 * i], flat[2 * i + 1])).ToList(),
            total > 0 ? (top[1] / total, top[0] / total) : (0, 0)
        );
    }
}
