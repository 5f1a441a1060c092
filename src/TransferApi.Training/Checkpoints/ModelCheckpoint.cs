using TransferApi.Training.Heads;
using TransferApi.Training.Imaging;
using static TorchSharp.torch;

namespace TransferApi.Training.Checkpoints;

/// <summary>
/// Everything needed to predict with a trained model except the backbone's own (frozen, shared) weights:
/// the backbone id, its preprocessing, the class labels in output order, the head's shape and its weights,
/// and, when fine-tuned, the weights of the last <see cref="FineTunedStages"/> stages (only those); and what serving
/// needs to be trusted: the calibration temperature, the novelty model and each class's recommended threshold.
/// </summary>
/// <param name="Temperature">Logits are divided by it before the softmax (1: uncalibrated).</param>
/// <param name="Novelty">Null for models trained before novelty detection existed.</param>
/// <param name="Thresholds">Each label's recommended probability threshold, in label order (null: none
/// computed).</param>
public sealed record ModelCheckpoint(
    string BackboneId,
    PreprocessingSpec Preprocessing,
    IReadOnlyList<string> Labels,
    int FeatureSize,
    HeadSpec Head,
    byte[] HeadWeights,
    int FineTunedStages = 0,
    byte[]? TailWeights = null,
    double Temperature = 1,
    Evaluation.NoveltyModel? Novelty = null,
    IReadOnlyList<double>? Thresholds = null
)
{
    public static ModelCheckpoint FromHead(
        string backboneId,
        PreprocessingSpec preprocessing,
        IReadOnlyList<string> labels,
        int featureSize,
        HeadSpec spec,
        nn.Module<Tensor, Tensor> head
    ) => new(backboneId, preprocessing, labels, featureSize, spec, Save(head));

    /// <summary>The fine-tuned stages on top of <paramref name="backbone"/>, in evaluation mode; null for a
    /// frozen-backbone model.</summary>
    public Backbones.FeatureTail? LoadTail(Backbones.Backbone backbone)
    {
        if (FineTunedStages == 0 || TailWeights is null)
            return null;
        var tail = backbone.CreateTail(FineTunedStages);
        Load(tail, TailWeights);
        tail.eval();
        return tail;
    }

    public static byte[] Save(nn.Module<Tensor, Tensor> module)
    {
        // Sized for the tensors up front (a fine-tuned tail is tens of megabytes): no discarded growth buffers.
        var tensorBytes =
            module.parameters().Sum(p => p.NumberOfElements * p.ElementSize)
            + module.buffers().Sum(b => b.NumberOfElements * b.ElementSize);
        using var stream = new MemoryStream((int)Math.Min(int.MaxValue, tensorBytes + 65536));
        module.save(stream);
        return stream.ToArray();
    }

    /// <summary>Loads weights written by <see cref="Save"/> into a module of the same shape.</summary>
    public static void Load(nn.Module module, byte[] weights)
    {
        using var stream = new MemoryStream(weights, writable: false);
        module.load(stream);
    }

    /// <summary>A fresh head module holding the stored weights, in evaluation mode.</summary>
    public nn.Module<Tensor, Tensor> LoadHead()
    {
        var head = ClassifierHead.Create(Head, FeatureSize, Labels.Count, seed: 0);
        Load(head, HeadWeights);
        head.eval();
        return head;
    }
}
