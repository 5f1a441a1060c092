using TransferApi.Training.Backbones;
using TransferApi.Training.Checkpoints;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace TransferApi.Training.Export;

/// <summary>
/// A trained model as one self-contained network, for exports: centre-cropped pixels 0..255 [N,3,S,S] in the
/// model's channel order in (normalization is inside: (pixels - input_offset) * input_multiplier), calibrated class
/// probabilities softmax(logits * inverse_temperature) [N, classes] out. The backbone's weights are the pretrained
/// ones with the model's fine-tuned stages in place. State-dict keys: input_offset, input_multiplier,
/// inverse_temperature, backbone.* (TorchVision names) and head.*.
/// </summary>
public sealed class ExportedClassifier : Module<Tensor, Tensor>
{
    private readonly Tensor input_offset;
    private readonly Tensor input_multiplier;
    private readonly Tensor inverse_temperature;
    private readonly FeatureNetwork backbone;
    private readonly Module<Tensor, Tensor> head;

    public ModelCheckpoint Checkpoint { get; }

    public FeatureNetwork Backbone => backbone;

    public ExportedClassifier(Backbone pretrained, ModelCheckpoint checkpoint)
        : base(nameof(ExportedClassifier))
    {
        Checkpoint = checkpoint;
        input_offset = pretrained.Preprocessor.InputOffset();
        input_multiplier = pretrained.Preprocessor.InputMultiplier();
        inverse_temperature = tensor(new[] { (float)(1 / checkpoint.Temperature) });
        backbone = pretrained.Architecture.Create();
        head = checkpoint.LoadHead();
        RegisterComponents();
        using (no_grad())
        {
            backbone.load_state_dict(pretrained.Network.state_dict());
            using var tail = checkpoint.LoadTail(pretrained);
            tail?.CopyInto(backbone);
        }
        foreach (var parameter in parameters())
            parameter.requires_grad = false;
        eval();
    }

    public override Tensor forward(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        var logits = head.call(backbone.call(pixels.sub(input_offset).mul_(input_multiplier)));
        return functional.softmax(logits.mul(inverse_temperature), 1).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            input_offset.Dispose();
            input_multiplier.Dispose();
            inverse_temperature.Dispose();
            backbone.Dispose();
            head.Dispose();
        }
        base.Dispose(disposing);
    }
}
