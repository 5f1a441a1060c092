using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace TransferApi.Training.Backbones;

/// <summary>
/// A ResNet of basic blocks without its classifier: image batch [N,3,H,W] in, pooled features [N,512] out.
/// Field names follow torchvision (conv1, bn1, layerX.Y.convZ, layerX.0.downsample.0/1) because they become
/// the state-dict keys that weight import and checkpoints rely on.
/// </summary>
public sealed class ResNetFeatureExtractor : Module<Tensor, Tensor>
{
    private static readonly int[] StageWidths = [64, 128, 256, FeatureSize];

    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly MaxPool2d maxpool;
    private readonly Sequential layer1, layer2, layer3, layer4;
    private readonly AdaptiveAvgPool2d avgpool;

    public const int FeatureSize = 512;

    /// <param name="blocksPerStage">Basic blocks in each of the four stages, e.g. [2,2,2,2] for torchvision's resnet18.</param>
    public ResNetFeatureExtractor(IReadOnlyList<int> blocksPerStage) : base(nameof(ResNetFeatureExtractor))
    {
        if (blocksPerStage.Count != 4) throw new ArgumentException("A ResNet has four stages.", nameof(blocksPerStage));
        conv1 = Conv2d(3, 64, kernel_size: 7, stride: 2, padding: 3, bias: false);
        bn1 = BatchNorm2d(64);
        maxpool = MaxPool2d(kernel_size: 3, stride: 2, padding: 1);
        BlocksPerStage = blocksPerStage.ToArray();
        (layer1, layer2, layer3, layer4) = (BuildStage(0, blocksPerStage[0]), BuildStage(1, blocksPerStage[1]), BuildStage(2, blocksPerStage[2]), BuildStage(3, blocksPerStage[3]));
        avgpool = AdaptiveAvgPool2d(1);
        RegisterComponents();
    }

    public IReadOnlyList<int> BlocksPerStage { get; }

    /// <summary>The residual stages, in order (layer1..layer4).</summary>
    public IReadOnlyList<Sequential> Stages => [layer1, layer2, layer3, layer4];

    /// <summary>Batch norm's epsilon (BatchNorm2d's default, which the imported weights were checked with); folding and exports use it too.</summary>
    public const double BatchNormEpsilon = 1e-5;

    /// <summary>Stage <paramref name="stage"/> (0-based) of basic blocks, the first of which downsamples after stage 0.</summary>
    public static Sequential BuildStage(int stage, int blocks)
    {
        var inChannels = stage == 0 ? 64 : StageWidths[stage - 1];
        var modules = new List<(string, Module<Tensor, Tensor>)>();
        foreach (var block in StageBlocks(stage, blocks))
        {
            modules.Add((block.Index.ToString(System.Globalization.CultureInfo.InvariantCulture),
                new BasicBlock(block.Index == 0 ? inChannels : StageWidths[stage], StageWidths[stage], block.Stride, block.Downsamples)));
        }
        return Sequential(modules);
    }

    /// <summary>Every basic block of a network with <paramref name="blocksPerStage"/>, in order: the one description of the topology.</summary>
    public static IEnumerable<BlockLayout> Blocks(IReadOnlyList<int> blocksPerStage) =>
        blocksPerStage.SelectMany((blocks, stage) => StageBlocks(stage, blocks));

    private static IEnumerable<BlockLayout> StageBlocks(int stage, int blocks) =>
        Enumerable.Range(0, blocks).Select(b => new BlockLayout($"layer{stage + 1}.{b}", stage, b, stage > 0 && b == 0 ? 2 : 1, stage > 0 && b == 0));

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        return Pool(layer4.call(Prefix(input, 3))).MoveToOuterDisposeScope();
    }

    /// <summary>The activation entering stage <paramref name="firstTrainableStage"/> (0-based; 4 = after the last stage).</summary>
    public Tensor Prefix(Tensor input, int firstTrainableStage)
    {
        using var scope = NewDisposeScope();
        var x = maxpool.call(functional.relu(bn1.call(conv1.call(input))));
        foreach (var stage in Stages.Take(firstTrainableStage)) x = stage.call(x);
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>Global average pooling to [N, 512] features.</summary>
    public Tensor Pool(Tensor activation) => avgpool.call(activation).flatten(1);

    private sealed class BasicBlock : Module<Tensor, Tensor>
    {
        private readonly Conv2d conv1, conv2;
        private readonly BatchNorm2d bn1, bn2;
        private readonly Sequential? downsample;

        public BasicBlock(int inChannels, int channels, int stride, bool downsamples) : base(nameof(BasicBlock))
        {
            conv1 = Conv2d(inChannels, channels, kernel_size: 3, stride: stride, padding: 1, bias: false);
            bn1 = BatchNorm2d(channels);
            conv2 = Conv2d(channels, channels, kernel_size: 3, stride: 1, padding: 1, bias: false);
            bn2 = BatchNorm2d(channels);
            if (downsamples)
                downsample = Sequential(Conv2d(inChannels, channels, kernel_size: 1, stride: stride, bias: false), BatchNorm2d(channels));
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var x = functional.relu(bn1.call(conv1.call(input)));
            x = bn2.call(conv2.call(x));
            var identity = downsample is null ? input : downsample.call(input);
            return functional.relu(x.add_(identity)).MoveToOuterDisposeScope();
        }
    }
}

/// <summary>One basic block's place in a ResNet: its state-dict prefix (layerS.B), stage, index, stride, and whether a 1x1 shortcut downsamples its input.</summary>
public sealed record BlockLayout(string Prefix, int Stage, int Index, int Stride, bool Downsamples);
