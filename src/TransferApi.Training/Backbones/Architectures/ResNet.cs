using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace TransferApi.Training.Backbones.Architectures;

/// <summary>
/// TorchVision's ResNet (v1.5: a bottleneck downsamples in its 3x3 conv) without <c>fc</c>: stem conv1/bn1/maxpool,
/// stages layer1..layer4 of basic or bottleneck blocks, global average pooling.
/// </summary>
public sealed class ResNet : FeatureNetwork
{
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Sequential layer1,
        layer2,
        layer3,
        layer4;
    private readonly List<Section> sections;

    public ResNet(BackboneArchitecture architecture, bool bottleneck, IReadOnlyList<int> blocksPerStage)
        : base(nameof(ResNet), architecture)
    {
        if (blocksPerStage.Count != 4)
            throw new ArgumentException("A ResNet has four stages.", nameof(blocksPerStage));
        BlocksPerStage = blocksPerStage.ToArray();
        Bottleneck = bottleneck;
        conv1 = Conv2d(3, 64, kernel_size: 7, stride: 2, padding: 3, bias: false);
        bn1 = BatchNorm2d(64);
        var stages = new Sequential[4];
        foreach (var stage in Enumerable.Range(0, 4))
            stages[stage] = Sequential(
                Blocks(bottleneck, blocksPerStage)
                    .Where(b => b.Stage == stage)
                    .Select(b =>
                        (
                            b.Index.ToString(System.Globalization.CultureInfo.InvariantCulture),
                            (Module<Tensor, Tensor>)new Block(b, Folding)
                        )
                    )
            );
        (layer1, layer2, layer3, layer4) = (stages[0], stages[1], stages[2], stages[3]);
        RegisterComponents();
        sections =
        [
            // Max pooling commutes with ReLU (both monotonic): pooling first leaves the ReLU a quarter of the pixels.
            new(
                ["conv1", "bn1"],
                x => functional.relu(functional.max_pool2d(Folding.Norm(bn1, conv1.call(x)), 3, 2, 1), inplace: true),
                (graph, x) => graph.Relu(graph.MaxPool(graph.Conv(x, conv1, bn1), 3, 2, 1))
            ),
            .. stages.Select(
                (s, i) => Section.Of([$"layer{i + 1}"], s.children().Cast<Module<Tensor, Tensor>>().ToList())
            ),
        ];
    }

    public IReadOnlyList<int> BlocksPerStage { get; }

    public bool Bottleneck { get; }

    protected override IReadOnlyList<Section> Sections => sections;

    protected override IEnumerable<(Conv2d, BatchNorm2d)> ConvNormPairs() =>
        [
            (conv1, bn1),
            .. new[] { layer1, layer2, layer3, layer4 }
                .SelectMany(s => s.children())
                .Cast<Block>()
                .SelectMany(b => b.ConvNormPairs()),
        ];

    /// <summary>Every block of a ResNet, in order: the one description of its topology (also for ONNX export and the
    /// CNTK import).</summary>
    public static IEnumerable<BlockLayout> Blocks(bool bottleneck, IReadOnlyList<int> blocksPerStage)
    {
        var expansion = bottleneck ? 4 : 1;
        var inChannels = 64;
        for (var stage = 0; stage < blocksPerStage.Count; stage++)
        {
            var width = 64 << stage;
            for (var b = 0; b < blocksPerStage[stage]; b++)
            {
                var stride = stage > 0 && b == 0 ? 2 : 1;
                yield return new BlockLayout(
                    $"layer{stage + 1}.{b}",
                    stage,
                    b,
                    inChannels,
                    width,
                    width * expansion,
                    stride,
                    stride != 1 || inChannels != width * expansion,
                    bottleneck
                );
                inChannels = width * expansion;
            }
        }
    }

    /// <summary>A basic block (two 3x3 convs) or a bottleneck (1x1, 3x3, 1x1), with its 1x1 shortcut when it
    /// downsamples.</summary>
    private sealed class Block : Module<Tensor, Tensor>, IOnnxBlock
    {
        private readonly Folding folding;
        private readonly Conv2d conv1,
            conv2;
        private readonly BatchNorm2d bn1,
            bn2;
        private readonly Conv2d? conv3;
        private readonly BatchNorm2d? bn3;
        private readonly Sequential? downsample;

        public Block(BlockLayout layout, Folding folding)
            : base(nameof(Block))
        {
            this.folding = folding;
            if (layout.Bottleneck)
            {
                conv1 = Conv2d(layout.InChannels, layout.Width, kernel_size: 1, bias: false);
                conv2 = Conv2d(
                    layout.Width,
                    layout.Width,
                    kernel_size: 3,
                    stride: layout.Stride,
                    padding: 1,
                    bias: false
                );
                conv3 = Conv2d(layout.Width, layout.OutChannels, kernel_size: 1, bias: false);
                bn3 = BatchNorm2d(layout.OutChannels);
            }
            else
            {
                conv1 = Conv2d(
                    layout.InChannels,
                    layout.Width,
                    kernel_size: 3,
                    stride: layout.Stride,
                    padding: 1,
                    bias: false
                );
                conv2 = Conv2d(layout.Width, layout.Width, kernel_size: 3, padding: 1, bias: false);
            }
            bn1 = BatchNorm2d(layout.Width);
            bn2 = BatchNorm2d(layout.Width);
            if (layout.Downsamples)
                downsample = Sequential(
                    Conv2d(layout.InChannels, layout.OutChannels, kernel_size: 1, stride: layout.Stride, bias: false),
                    BatchNorm2d(layout.OutChannels)
                );
            RegisterComponents();
        }

        public IEnumerable<(Conv2d, BatchNorm2d)> ConvNormPairs()
        {
            yield return (conv1, bn1);
            yield return (conv2, bn2);
            if (conv3 is not null)
                yield return (conv3, bn3!);
            if (downsample is not null)
                yield return ((Conv2d)downsample[0], (BatchNorm2d)downsample[1]);
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var x = functional.relu(folding.Norm(bn1, conv1.call(input)), inplace: true);
            x = folding.Norm(bn2, conv2.call(x));
            if (conv3 is not null)
                x = folding.Norm(bn3!, conv3.call(functional.relu(x, inplace: true)));
            var identity = downsample is null
                ? input
                : folding.Norm((BatchNorm2d)downsample[1], ((Conv2d)downsample[0]).call(input));
            return functional.relu(x.add_(identity), inplace: true).MoveToOuterDisposeScope();
        }

        public string Emit(IOnnxGraph graph, string input)
        {
            var x = graph.Conv(graph.Relu(graph.Conv(input, conv1, bn1)), conv2, bn2);
            if (conv3 is not null)
                x = graph.Conv(graph.Relu(x), conv3, bn3);
            var identity = downsample is null
                ? input
                : graph.Conv(input, (Conv2d)downsample[0], (BatchNorm2d)downsample[1]);
            return graph.Relu(graph.Add(x, identity));
        }
    }
}

/// <summary>One ResNet block's place: state-dict prefix (layerS.B), stage, index, channels, stride, whether a 1x1
/// shortcut projects its input, and its kind.</summary>
public sealed record BlockLayout(
    string Prefix,
    int Stage,
    int Index,
    int InChannels,
    int Width,
    int OutChannels,
    int Stride,
    bool Downsamples,
    bool Bottleneck
);
