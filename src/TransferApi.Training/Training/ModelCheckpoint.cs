using TransferApi.Training.Imaging;
using static TorchSharp.torch;

namespace TransferApi.Training.Training;

/// <summary>
/// Everything needed to predict with a trained model except the backbone's own (frozen, shared) weights:
/// the backbone id, its preprocessing, the class labels in output order, the head's shape and its weights.
/// </summary>
public sealed record ModelCheckpoint(string BackboneId, PreprocessingSpec Preprocessing, IReadOnlyList<string> Labels, int FeatureSize, HeadSpec Head, byte[] HeadWeights)
{
    public static ModelCheckpoint FromHead(string backboneId, PreprocessingSpec preprocessing, IReadOnlyList<string> labels, int featureSize, HeadSpec spec, nn.Module<Tensor, Tensor> head)
    {
        using var stream = new MemoryStream();
        head.save(stream);
        return new ModelCheckpoint(backboneId, preprocessing, labels, featureSize, spec, stream.ToArray());
    }

    /// <summary>A fresh head module holding the stored weights, in evaluation mode.</summary>
    public nn.Module<Tensor, Tensor> LoadHead()
    {
        var head = ClassifierHead.Create(Head, FeatureSize, Labels.Count, seed: 0);
        using var stream = new MemoryStream(HeadWeights, writable: false);
        head.load(stream);
        head.eval();
        return head;
    }
}
