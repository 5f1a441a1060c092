using TransferApi.Training.Backbones;
using TransferApi.Training.Checkpoints;
using static TorchSharp.torch;

namespace TransferApi.Training.Inference;

public sealed record LabelProbability(string Label, double Probability);

/// <summary>The model's answer for one image.</summary>
/// <param name="Probabilities">Calibrated class probabilities, in label order.</param>
/// <param name="Novelty">How unlike the training images it is (null for a model without a novelty model).</param>
public sealed record ImageScores(float[] Probabilities, double? Novelty);

/// <summary>A trained model ready to predict: the shared frozen backbone, the model's fine-tuned stages if any, and its
/// head.</summary>
public sealed class ImageClassifier : IDisposable
{
    private readonly Backbone backbone;
    private readonly nn.Module<Tensor, Tensor> head;
    private readonly Backbones.FeatureTail? tail;
    private readonly Tensor? noveltyBank;

    public ModelCheckpoint Checkpoint { get; }

    public ImageClassifier(Backbone backbone, ModelCheckpoint checkpoint)
    {
        if (backbone.Id != checkpoint.BackboneId)
            throw new ArgumentException(
                $"The model was trained on backbone '{checkpoint.BackboneId}', not '{backbone.Id}'.",
                nameof(checkpoint)
            );
        if (backbone.Preprocessor.Spec != checkpoint.Preprocessing)
            throw new ArgumentException("The model's preprocessing differs from its backbone's.", nameof(checkpoint));
        this.backbone = backbone;
        Checkpoint = checkpoint;
        head = checkpoint.LoadHead();
        tail = checkpoint.LoadTail(backbone);
        noveltyBank = checkpoint.Novelty?.BankTensor();
    }

    /// <summary>Decodes and crops encoded images exactly as training did, without touching libtorch: the per-image CPU
    /// work any thread may do.</summary>
    public float[] Decode(IReadOnlyList<byte[]> images) => backbone.Preprocessor.DecodePlanar(images);

    /// <summary>Several <see cref="Decode"/> results as one batch (block copies: this runs on the critical path of
    /// batching).</summary>
    public static float[] Concat(IReadOnlyList<float[]> decoded)
    {
        if (decoded.Count == 1)
            return decoded[0];
        var all = new float[decoded.Sum(d => (long)d.Length)];
        var offset = 0;
        foreach (var part in decoded)
        {
            Array.Copy(part, 0, all, offset, part.Length);
            offset += part.Length;
        }
        return all;
    }

    /// <summary>Calibrated class probabilities and novelty of <paramref name="count"/> images decoded by <see
    /// cref="Decode"/>, in one forward pass.</summary>
    public ImageScores[] Score(float[] decoded, int count)
    {
        using var scope = NewDisposeScope();
        var features = Features(backbone.Preprocessor.FromPlanar(decoded, count));
        using var mode = inference_mode();
        return Scores(features);
    }

    /// <summary>What <see cref="Score"/> answers, from images' frozen-backbone features [N, F] (cached ones): no
    /// backbone pass. Only for a model that fine-tuned no stages.</summary>
    public ImageScores[] ScoreFeatures(Tensor features)
    {
        if (tail is not null)
            throw new InvalidOperationException("The model fine-tuned backbone stages; frozen features do not apply.");
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        return Scores(features);
    }

    private ImageScores[] Scores(Tensor features)
    {
        var probabilities = Probabilities(features);
        var novelty = noveltyBank is null ? null : Checkpoint.Novelty!.Score(noveltyBank, features);
        return probabilities.Select((p, i) => new ImageScores(p, novelty?[i])).ToArray();
    }

    /// <summary>softmax(head(features) / T), one row per image.</summary>
    private List<float[]> Probabilities(Tensor features) =>
        TensorRows.Of(nn.functional.softmax(head.call(features) / Checkpoint.Temperature, 1));

    /// <summary>The <paramref name="topK"/> most probable labels of each encoded image, most probable first.</summary>
    public IReadOnlyList<IReadOnlyList<LabelProbability>> Classify(IReadOnlyList<byte[]> images, int topK) =>
        Score(Decode(images), images.Count).Select(s => Ranked(s.Probabilities, topK)).ToList();

    /// <summary>Labels by probability, most probable first (ties by label), at most <paramref name="topK"/>, none below
    /// its threshold: <paramref name="thresholds"/>[class] when given, else <paramref name="threshold"/>.</summary>
    public IReadOnlyList<LabelProbability> Ranked(
        float[] probabilities,
        int topK,
        double threshold = 0,
        IReadOnlyList<double>? thresholds = null
    ) =>
        probabilities
            .Select((value, i) => (Label: new LabelProbability(Checkpoint.Labels[i], value), Index: i))
            .Where(l => l.Label.Probability >= (thresholds?[l.Index] ?? threshold))
            .Select(l => l.Label)
            .OrderByDescending(l => l.Probability)
            .ThenBy(l => l.Label, StringComparer.Ordinal)
            .Take(topK)
            .ToList();

    /// <summary>The same network path as training: frozen prefix, fine-tuned stages, pooling.</summary>
    private Tensor Features(Tensor pixels)
    {
        if (tail is null)
            return backbone.Forward(pixels);
        using var activations = backbone.Activations(pixels, tail.FirstStage);
        using var mode = inference_mode();
        using var features = tail.call(activations);
        return features.clone();
    }

    /// <summary>Bytes this model holds beyond the shared backbone (its head and fine-tuned stages), for cache
    /// budgets.</summary>
    public long SizeBytes =>
        Checkpoint.HeadWeights.LongLength
        + (Checkpoint.TailWeights?.LongLength ?? 0)
        + (Checkpoint.Novelty?.Bank.LongLength ?? 0) * sizeof(float) * 2;

    public void Dispose()
    {
        head.Dispose();
        tail?.Dispose();
        noveltyBank?.Dispose();
    }
}
