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
    private readonly Conv2d stem;
    private readonly MaxPool2d maxpool = MaxPool2d(kernel_size: 3, stride: 2, padding: 1);
    private readonly List<List<FoldedBlock>> stages = [];

    public FoldedResNet(ResNetFeatureExtractor network) : base(nameof(FoldedResNet))
    {
        var weights = network.state_dict();
        stem = Folded(weights, "conv1", "bn1", stride: 2, padding: 3);
        register_module("stem", stem);
        register_module("maxpool", maxpool);
        foreach (var layout in ResNetFeatureExtractor.Blocks(network.BlocksPerStage))
        {
            var p = layout.Prefix;
            var block = new FoldedBlock(
                Folded(weights, $"{p}.conv1", $"{p}.bn1", layout.Stride, 1),
                Folded(weights, $"{p}.conv2", $"{p}.bn2", 1, 1),
                layout.Downsamples ? Folded(weights, $"{p}.downsample.0", $"{p}.downsample.1", layout.Stride, 0) : null);
            register_module(p.Replace('.', '_'), block);
            if (layout.Index == 0) stages.Add([]);
            stages[^1].Add(block);
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
            // Intermediates go with the scope; the two tensors handed to the parameters leave it.
            using var scope = NewDisposeScope();
            var scale = weights[$"{norm}.weight"].div((weights[$"{norm}.running_var"] + ResNetFeatureExtractor.BatchNormEpsilon).sqrt());
            var foldedWeight = ChannelsLast(w.mul(scale.reshape(-1, 1, 1, 1))).DetachFromDisposeScope();
            var foldedBias = weights[$"{norm}.bias"].sub(weights[$"{norm}.running_mean"].mul(scale)).DetachFromDisposeScope();
            folded.weight = new Parameter(foldedWeight, requires_grad: false);
            folded.bias = new Parameter(foldedBias, requires_grad: false);
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
