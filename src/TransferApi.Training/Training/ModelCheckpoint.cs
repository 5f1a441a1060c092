using TransferApi.Training.Imaging;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TransferApi.Training.Training;

/// <summary>
/// Everything needed to predict with a trained model except the backbone's own (frozen, shared) weights:
/// the backbone id, its preprocessing, the class labels in output order and the head's weights.
/// </summary>
public sealed record ModelCheckpoint(string BackboneId, PreprocessingSpec Preprocessing, IReadOnlyList<string> Labels, int FeatureSize, byte[] HeadWeights)
{
    public static Linear CreateHead(int featureSize, int classes) => nn.Linear(featureSize, classes);

    public static ModelCheckpoint FromHead(string backboneId, PreprocessingSpec preprocessing, IReadOnlyList<string> labels, Linear head)
    {
        using var stream = new MemoryStream();
        head.save(stream);
        return new ModelCheckpoint(backboneId, preprocessing, labels, (int)head.in_features, stream.ToArray());
    }

    /// <summary>A fresh head module holding the stored weights, in evaluation mode.</summary>
    public Linear LoadHead()
    {
        var head = CreateHead(FeatureSize, Labels.Count);
        using var stream = new MemoryStream(HeadWeights, writable: false);
        head.load(stream);
        head.eval();
        return head;
    }
}
