using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace TransferApi.Training.Backbones;

/// <summary>
/// The frozen <see cref="ResNetFeatureExtractor"/> rewritten for inference only: each batch norm folded into the
/// convolution before it (w * g/sqrt(v+e), b - m * g/sqrt(v+e)), and weights and activations in channels-last
/// layout, which libtorch's CPU convolutions run faster. Same features within float rounding; never trained
/// (fine-tuning trains an unfolded <see cref="ResNetTail"/>).
/// </summary>
public sealed class FoldedResNet : Module<Tensor, Tensor>
{
    private const double BatchNormEpsilon = 1e-5;

    private readonly Conv2d stem;
    private readonly MaxPool2d maxpool = MaxPool2d(kernel_size: 3, stride: 2, padding: 1);
    private readonly List<List<FoldedBlock>> stages = [];

    public FoldedResNet(ResNetFeatureExtractor network) : base(nameof(FoldedResNet))
    {
        var weights = network.state_dict();
        stem = Folded(weights, "conv1", "bn1", stride: 2, padding: 3);
        register_module("stem", stem);
        register_module("maxpool", maxpool);
        for (var s = 0; s < network.BlocksPerStage.Count; s++)
        {
            var blocks = new List<FoldedBlock>();
            for (var b = 0; b < network.BlocksPerStage[s]; b++)
            {
                var prefix = $"layer{s + 1}.{b}";
                var stride = s > 0 && b == 0 ? 2 : 1;
                var block = new FoldedBlock(
                    Folded(weights, $"{prefix}.conv1", $"{prefix}.bn1", stride, 1),
                    Folded(weights, $"{prefix}.conv2", $"{prefix}.bn2", 1, 1),
                    weights.ContainsKey($"{prefix}.downsample.0.weight") ? Folded(weights, $"{prefix}.downsample.0", $"{prefix}.downsample.1", stride, 0) : null);
                register_module($"layer{s + 1}_{b}", block);
                blocks.Add(block);
            }
            stages.Add(blocks);
        }
        eval();
    }

    public override Tensor forward(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        return Prefix(pixels, stages.Count).mean([2, 3]).MoveToOuterDisposeScope();
    }

    /// <summary>The activation entering stage <paramref name="firstTrainableStage"/> (0-based), as a contiguous NCHW tensor.</summary>
    public Tensor Prefix(Tensor pixels, int firstTrainableStage)
    {
        using var scope = NewDisposeScope();
        var x = maxpool.call(functional.relu(stem.call(ChannelsLast(pixels))));
        foreach (var stage in stages.Take(firstTrainableStage))
        foreach (var block in stage)
            x = block.call(x);
        return x.contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>NCHW shape with NHWC strides: what libtorch's channels-last convolutions want (TorchSharp 0.107 has no memory-format argument).</summary>
    private static Tensor ChannelsLast(Tensor x) => x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);

    private static Conv2d Folded(Dictionary<string, Tensor> weights, string conv, string norm, int stride, int padding)
    {
        var w = weights[$"{conv}.weight"];
        var (outChannels, inChannels, kernel) = (w.shape[0], w.shape[1], w.shape[2]);
        var folded = Conv2d(inChannels, outChannels, kernel_size: kernel, stride: stride, padding: padding, bias: true);
        using (no_grad())
        {
            using var scale = weights[$"{norm}.weight"].div((weights[$"{norm}.running_var"] + BatchNormEpsilon).sqrt());
            using var foldedWeight = w.mul(scale.reshape(-1, 1, 1, 1));
            folded.weight = new Parameter(ChannelsLast(foldedWeight), requires_grad: false);
            folded.bias = new Parameter(weights[$"{norm}.bias"].sub(weights[$"{norm}.running_mean"].mul(scale)), requires_grad: false);
        }
        return folded;
    }

    private sealed class FoldedBlock : Module<Tensor, Tensor>
    {
        private readonly Conv2d conv1, conv2;
        private readonly Conv2d? shortcut;

        public FoldedBlock(Conv2d conv1, Conv2d conv2, Conv2d? shortcut) : base(nameof(FoldedBlock))
        {
            (this.conv1, this.conv2, this.shortcut) = (conv1, conv2, shortcut);
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var x = conv2.call(functional.relu(conv1.call(input)));
            var identity = shortcut is null ? input : shortcut.call(input);
            return functional.relu(x.add_(identity)).MoveToOuterDisposeScope();
        }
    }
}
