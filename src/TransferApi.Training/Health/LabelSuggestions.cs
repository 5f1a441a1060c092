using TransferApi.Training.Heads;
using static TorchSharp.torch;

namespace TransferApi.Training.Health;

/// <param name="Image">Index into the candidates given.</param>
/// <param name="Predicted">Index of the most probable class.</param>
/// <param name="Probability">Its probability.</param>
/// <param name="Uncertainty">1 minus the margin between the two most probable classes: 1 when they tie.</param>
/// <param name="Diversity">1 minus the highest cosine similarity to an image picked before it (1 for the
/// first).</param>
/// <param name="Score">Uncertainty times diversity when it was picked; never rises down the list.</param>
public sealed record LabelSuggestion(
    int Image,
    int Predicted,
    double Probability,
    double Uncertainty,
    double Diversity,
    double Score
);

/// <summary>
/// Which unlabeled images to label next: those the model is least sure of (smallest margin between its two best
/// classes), picked greedily so each next one is also unlike those already picked, and never a near-duplicate of one.
/// </summary>
public static class LabelSuggestions
{
    public static IReadOnlyList<LabelSuggestion> Rank(
        IReadOnlyList<float[]> probabilities,
        Tensor features,
        int count,
        double duplicateThreshold = NearDuplicates.DefaultThreshold
    )
    {
        ArgumentOutOfRangeException.ThrowIfNotEqual(features.shape[0], probabilities.Count);
        var n = probabilities.Count;
        var uncertainty = probabilities.Select(Uncertainty).ToArray();
        // Highest similarity of each candidate to any picked image so far.
        var nearest = new float[n];
        var available = Enumerable.Repeat(true, n).ToArray();
        var picked = new List<LabelSuggestion>();
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        var unit = nn.functional.normalize(features.to_type(ScalarType.Float32), p: 2, dim: 1);
        while (picked.Count < count)
        {
            var best = -1;
            var bestScore = double.NegativeInfinity;
            for (var i = 0; i < n; i++)
            {
                if (!available[i])
                    continue;
                var score = uncertainty[i] * Diversity(picked.Count, nearest[i]);
                if (score > bestScore)
                    (best, bestScore) = (i, score);
            }
            if (best < 0)
                break;
            available[best] = false;
            var p = probabilities[best];
            var predicted = Array.IndexOf(p, p.Max());
            picked.Add(
                new LabelSuggestion(
                    best,
                    predicted,
                    p[predicted],
                    uncertainty[best],
                    Diversity(picked.Count, nearest[best]),
                    bestScore
                )
            );
            using var similarity = unit.matmul(unit[best]);
            var values = similarity.data<float>().ToArray();
            for (var i = 0; i < n; i++)
            {
                nearest[i] = Math.Max(nearest[i], values[i]);
                if (values[i] >= duplicateThreshold)
                    available[i] = false;
            }
        }
        return picked;
    }

    /// <summary>
    /// Class probabilities of the <paramref name="candidates"/> from a head trained on the labelled features (the
    /// options health uses for its out-of-fold heads): a model in well under a second when none is trained yet.
    /// </summary>
    public static IReadOnlyList<float[]> QuickProbabilities(
        Tensor labelled,
        IReadOnlyList<int> labels,
        int classes,
        Tensor candidates,
        long seed,
        CancellationToken cancellation
    )
    {
        using var scope = NewDisposeScope();
        var trained = HeadTrainer.Train(
            new HeadTrainingSet(labelled, tensor(labels.Select(l => (long)l).ToArray()), null, null, classes),
            EpochLoop.Quiet(DatasetHealth.FoldHeadOptions(labels.Count, seed), cancellation)
        );
        using var head = trained.Head;
        head.eval();
        using var noGradients = no_grad();
        return TensorRows.Of(nn.functional.softmax(head.call(candidates), 1));
    }

    private static double Uncertainty(float[] p)
    {
        if (p.Length < 2)
            return 0;
        var sorted = p.OrderDescending().ToArray();
        return 1 - (sorted[0] - sorted[1]);
    }

    private static double Diversity(int pickedSoFar, float nearest) =>
        pickedSoFar == 0 ? 1 : Math.Clamp(1 - nearest, 0, 1);
}
