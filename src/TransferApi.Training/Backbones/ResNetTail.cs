using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace TransferApi.Training.Backbones;

/// <summary>
/// A trainable copy of a ResNet's last stages plus pooling, for fine-tuning: activation entering stage
/// <see cref="FirstStage"/> in, features out. Its state-dict keys (layer3.*, layer4.*) equal the backbone's,
/// so it starts from the pretrained weights and its checkpoint holds only what fine-tuning changed.
/// </summary>
public sealed class ResNetTail : Module<Tensor, Tensor>
{
    private readonly List<Module<Tensor, Tensor>> stages = [];
    private readonly Func<Tensor, Tensor> pool;

    public int FirstStage { get; }

    public ResNetTail(ResNetFeatureExtractor backbone, int firstStage) : base(nameof(ResNetTail))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(firstStage, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(firstStage, 3);
        FirstStage = firstStage;
        for (var s = firstStage; s < 4; s++)
        {
            var stage = ResNetFeatureExtractor.BuildStage(s, backbone.BlocksPerStage[s]);
            register_module($"layer{s + 1}", stage);
            stages.Add(stage);
        }
        pool = backbone.Pool;
        var pretrained = backbone.state_dict();
        using (no_grad())
        {
            foreach (var (name, tensor) in state_dict()) tensor.copy_(pretrained[name]);
        }
    }

    public override Tensor forward(Tensor activation)
    {
        using var scope = NewDisposeScope();
        var x = activation;
        foreach (var stage in stages) x = stage.call(x);
        return pool(x).MoveToOuterDisposeScope();
    }

    /// <summary>Trains the convolutions and batch-norm scales, but keeps every batch-norm's ImageNet statistics.</summary>
    public void TrainKeepingNormStatistics()
    {
        train();
        foreach (var module in modules().OfType<TorchSharp.Modules.BatchNorm2d>()) module.eval();
    }
}
