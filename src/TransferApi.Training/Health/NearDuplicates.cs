using static TorchSharp.torch;

namespace TransferApi.Training.Health;

/// <summary>Images whose features are nearly the same: copies resized, re-encoded or slightly cropped.</summary>
/// <param name="Images">Indices into the features given, ascending.</param>
/// <param name="Similarity">The lowest cosine similarity of a pair that joined the group.</param>
public sealed record NearDuplicateGroup(IReadOnlyList<int> Images, double Similarity);

public static class NearDuplicates
{
    /// <summary>
    /// Cosine similarity of ResNet18 features at which two images count as copies, measured by
    /// <c>scripts/benchmark.sh health</c>: no pair of the 766 distinct shared photos (293,000 pairs; the most similar
    /// 0.934) reaches it, while 94 % of copies resized to half, 100 % re-encoded at JPEG quality 40, 93 % cropped to
    /// 90 %, 95 % mirrored and 91 % resized, re-encoded and cropped together do. A crop to 80 % from a corner is
    /// mostly missed (20 %): by then it is another picture of the scene.
    /// </summary>
    public const double DefaultThreshold = 0.94;

    /// <summary>
    /// Groups images linked by a cosine similarity of at least <paramref name="threshold"/> (transitively: a chain of
    /// copies is one group). Exact search, a block of rows at a time: time grows with the square of the images
    /// (10,000 images of 512 features are 5 x 10^10 multiply-adds), memory only with the block times the images.
    /// </summary>
    public static IReadOnlyList<NearDuplicateGroup> Find(Tensor features, double threshold, int blockRows = 1024)
    {
        var count = (int)features.shape[0];
        var parent = Enumerable.Range(0, count).ToArray();
        var weakest = new Dictionary<int, double>();
        int Root(int i)
        {
            while (parent[i] != i)
                i = parent[i] = parent[parent[i]];
            return i;
        }
        using (var scope = NewDisposeScope())
        using (inference_mode())
        {
            var unit = nn.functional.normalize(features.to_type(ScalarType.Float32), p: 2, dim: 1);
            for (var first = 0; first < count; first += blockRows)
            {
                using var block = NewDisposeScope();
                var rows = Math.Min(blockRows, count - first);
                // Only pairs (i, j) with j > i: the upper triangle of this block against the rest.
                var others = unit.narrow(0, first, count - first);
                var similarity = unit.narrow(0, first, rows).matmul(others.t());
                var pairs = similarity.ge(threshold).triu(1).nonzero();
                if (pairs.shape[0] == 0)
                    continue;
                var indices = pairs.contiguous().data<long>().ToArray();
                var values = similarity.index([pairs.select(1, 0), pairs.select(1, 1)]).data<float>().ToArray();
                for (var p = 0; p < values.Length; p++)
                {
                    var (a, b) = (Root(first + (int)indices[2 * p]), Root(first + (int)indices[2 * p + 1]));
                    if (a == b)
                        continue;
                    var lowest = Math.Min(
                        values[p],
                        Math.Min(weakest.GetValueOrDefault(a, 1), weakest.GetValueOrDefault(b, 1))
                    );
                    parent[Math.Max(a, b)] = Math.Min(a, b);
                    weakest[Math.Min(a, b)] = lowest;
                }
            }
        }
        return Enumerable
            .Range(0, count)
            .GroupBy(Root)
            .Where(g => g.Count() > 1)
            .Select(g => new NearDuplicateGroup(g.Order().ToList(), weakest.GetValueOrDefault(g.Key, 1)))
            .OrderBy(g => g.Images[0])
            .ToList();
    }
}
