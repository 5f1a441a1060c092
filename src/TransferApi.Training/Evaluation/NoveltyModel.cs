using static TorchSharp.torch;

namespace TransferApi.Training.Evaluation;

/// <summary>
/// How unlike the model's training images an image is, in the features its head sees: one minus the cosine
/// similarity to the <see cref="K"/>-th nearest training image (deep nearest neighbours, Sun et al. 2022). It
/// needs no assumption about the features' distribution, which a class-conditional Mahalanobis distance does;
/// docs/trust.md has the measurements behind the choice and the defaults.
/// </summary>
/// <param name="K">Which neighbour's distance is the score.</param>
/// <param name="Dimension">Feature size.</param>
/// <param name="Bank">Unit-length training features, row-major [rows, Dimension] (at most <see
/// cref="MaxBank"/> rows, a seeded sample beyond that).</param>
/// <param name="ReferenceScores">Scores of in-distribution images the bank does not hold, ascending: validation
/// images, or out-of-fold training images when validation has too few.</param>
/// <param name="Reference">Where <see cref="ReferenceScores"/> come from: "validation" or "training
/// (leave-one-out)".</param>
public sealed record NoveltyModel(int K, int Dimension, float[] Bank, double[] ReferenceScores, string Reference)
{
    public const int DefaultK = 5;

    /// <summary>Bank rows kept: scoring costs one [rows x Dimension] product per image, storage 4 bytes per
    /// value.</summary>
    public const int MaxBank = 4096;

    public int BankRows => Bank.Length / Dimension;

    /// <summary>The score under which <paramref name="acceptance"/> of in-distribution images fall: above it an image
    /// is unknown.</summary>
    public double Threshold(double acceptance)
    {
        if (ReferenceScores.Length == 0)
            return double.PositiveInfinity;
        // The nearest-rank quantile: at least that share of the reference images score at or below it.
        var rank = (int)Math.Ceiling(Math.Clamp(acceptance, 0, 1) * ReferenceScores.Length) - 1;
        return ReferenceScores[Math.Clamp(rank, 0, ReferenceScores.Length - 1)];
    }

    /// <summary>Fits the model on training features [N, F]; the held-out ones [M, F] are the reference when given,
    /// else the training images scored against the others.</summary>
    public static NoveltyModel Fit(Tensor training, Tensor? heldOut, long seed, int k = DefaultK)
    {
        using var scope = NewDisposeScope();
        var rows = (int)training.shape[0];
        var dimension = (int)training.shape[1];
        var keep =
            rows <= MaxBank
                ? Enumerable.Range(0, rows).ToArray()
                : new Random(unchecked((int)seed)).GetItems(Enumerable.Range(0, rows).ToArray(), MaxBank);
        using var mode = inference_mode();
        var bank = Normalized(training.index_select(0, tensor(keep.Select(i => (long)i).ToArray())));
        var effectiveK = Math.Max(1, Math.Min(k, keep.Length - 1));
        double[] reference;
        string source;
        if (heldOut is not null)
        {
            reference = Scores(bank, Normalized(heldOut), effectiveK, excludeSelf: false);
            source = "validation";
        }
        else
        {
            reference = Scores(bank, bank, effectiveK, excludeSelf: true);
            source = "training (leave-one-out)";
        }
        Array.Sort(reference);
        return new NoveltyModel(effectiveK, dimension, bank.contiguous().data<float>().ToArray(), reference, source);
    }

    /// <summary>A tensor of the bank for scoring many batches (the caller disposes it).</summary>
    public Tensor BankTensor() => tensor(Bank, [BankRows, Dimension]);

    /// <summary>Each image's score, given its features [N, F] and <see cref="BankTensor"/>.</summary>
    public double[] Score(Tensor bank, Tensor features)
    {
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        return Scores(bank, Normalized(features), K, excludeSelf: false);
    }

    /// <summary>Each image's score against all the others [N, F], in order (every image, no sample).</summary>
    public static double[] LeaveOneOutScores(Tensor features, int k)
    {
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        var unit = Normalized(features);
        return Scores(unit, unit, Math.Max(1, Math.Min(k, (int)features.shape[0] - 1)), excludeSelf: true);
    }

    private static Tensor Normalized(Tensor features) =>
        nn.functional.normalize(features.to_type(ScalarType.Float32), p: 2, dim: 1);

    /// <summary>1 - the K-th largest cosine similarity to the bank, a chunk of queries at a time.</summary>
    private static double[] Scores(Tensor bank, Tensor queries, int k, bool excludeSelf)
    {
        var count = (int)queries.shape[0];
        var scores = new double[count];
        const int chunk = 512;
        for (var first = 0; first < count; first += chunk)
        {
            using var chunkScope = NewDisposeScope();
            var size = Math.Min(chunk, count - first);
            var similarity = queries.narrow(0, first, size).matmul(bank.t());
            if (excludeSelf)
                // Query i is bank row first + i: it must not be its own neighbour.
                similarity.index_put_(
                    tensor(-2f),
                    arange(size, ScalarType.Int64),
                    arange(first, first + size, ScalarType.Int64)
                );
            var kth = similarity.topk(Math.Min(k, (int)bank.shape[0]), dim: 1).values.select(1, -1);
            var values = kth.contiguous().data<float>().ToArray();
            for (var i = 0; i < size; i++)
                scores[first + i] = 1 - values[i];
        }
        return scores;
    }
}
