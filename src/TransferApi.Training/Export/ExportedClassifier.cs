using TransferApi.Training.Backbones;
using TransferApi.Training.Training;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace TransferApi.Training.Export;

/// <summary>
/// A trained model as one self-contained network, for exports: centre-cropped BGR pixels 0..255 [N,3,S,S] in
/// (the mean image is inside), class probabilities [N, classes] out. The backbone's weights are the pretrained
/// ones with the model's fine-tuned stages in place. State-dict keys: mean_image, backbone.* (torchvision
/// names, blocks [2,2,2,3]) and head.*.
/// </summary>
public sealed class ExportedClassifier : Module<Tensor, Tensor>
{
    private readonly Tensor mean_image;
    private readonly ResNetFeatureExtractor backbone;
    private readonly Module<Tensor, Tensor> head;

    public ModelCheckpoint Checkpoint { get; }

    public IReadOnlyList<int> BlocksPerStage => backbone.BlocksPerStage;

    public ExportedClassifier(Backbone pretrained, ModelCheckpoint checkpoint) : base(nameof(ExportedClassifier))
    {
        Checkpoint = checkpoint;
        mean_image = pretrained.Preprocessor.MeanImage.clone();
        backbone = new ResNetFeatureExtractor(pretrained.Network.BlocksPerStage);
        head = checkpoint.LoadHead();
        RegisterComponents();
        var weights = backbone.state_dict();
        using (no_grad())
        {
            foreach (var (name, value) in pretrained.Network.state_dict()) weights[name].copy_(value);
            using var tail = checkpoint.LoadTail(pretrained);
            if (tail is not null)
                foreach (var (name, value) in tail.state_dict()) weights[name].copy_(value);
        }
        foreach (var parameter in parameters()) parameter.requires_grad = false;
        eval();
    }

    public override Tensor forward(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        var logits = head.call(backbone.call(pixels.sub(mean_image)));
        return functional.softmax(logits, 1).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            mean_image.Dispose();
            backbone.Dispose();
            head.Dispose();
        }
        base.Dispose(disposing);
    }
}
