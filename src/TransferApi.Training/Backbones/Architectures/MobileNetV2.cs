using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace TransferApi.Training.Backbones.Architectures;

/// <summary>
/// TorchVision's MobileNetV2 (width 1.0) without <c>classifier</c>: <c>features.0</c> (stem), inverted residual
/// blocks <c>features.1..17</c>, the 1x1 conv <c>features.18</c> to 1280 channels, global average pooling.
/// Stages by output stride: features.1-3 (4), 4-6 (8), 7-13 (16), 14-18 (32).
/// </summary>
public sealed class MobileNetV2 : FeatureNetwork
{
    // TorchVision's settings: expansion t, output channels c, repeats n, first stride s.
    private static readonly (int T, int C, int N, int S)[] Settings =
    [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    private static readonly int[][] StageBlocks =
    [
        [1, 2, 3],
        [4, 5, 6],
        [7, 8, 9, 10, 11, 12, 13],
        [14, 15, 16, 17, 18],
    ];

    private readonly Sequential features;
    private readonly List<(Conv2d, BatchNorm2d)> convNorms = [];
    private readonly List<Section> sections;

    public MobileNetV2(BackboneArchitecture architecture)
        : base(nameof(MobileNetV2), architecture)
    {
        var blocks = new List<Module<Tensor, Tensor>>
        {
            new ConvNormActivation(3, 32, 3, 2, 1, Folding, convNorms.Add),
        };
        var input = 32;
        foreach (var (t, c, n, s) in Settings)
        {
            for (var i = 0; i < n; i++)
            {
                blocks.Add(new InvertedResidual(input, c, i == 0 ? s : 1, t, Folding, convNorms.Add));
                input = c;
            }
        }
        blocks.Add(new ConvNormActivation(input, 1280, 1, 1, 1, Folding, convNorms.Add));
        features = Sequential(
            blocks.Select((b, i) => (i.ToString(System.Globalization.CultureInfo.InvariantCulture), b))
        );
        RegisterComponents();
        sections =
        [
            Section.Of(["features.0"], [blocks[0]]),
            .. StageBlocks.Select(stage =>
                Section.Of(stage.Select(i => $"features.{i}").ToList(), stage.Select(i => blocks[i]).ToList())
            ),
        ];
    }

    protected override IReadOnlyList<Section> Sections => sections;

    protected override IEnumerable<(Conv2d, BatchNorm2d)> ConvNormPairs() => convNorms;

    /// <summary>TorchVision's Conv2dNormActivation: conv (index 0), batch norm (1), then ReLU6.</summary>
    private sealed class ConvNormActivation : Module<Tensor, Tensor>, IOnnxBlock
    {
        private readonly Folding folding;

        private readonly Conv2d conv;
        private readonly BatchNorm2d norm;

        public ConvNormActivation(
            int inChannels,
            int outChannels,
            int kernel,
            int stride,
            int groups,
            Folding folding,
            Action<(Conv2d, BatchNorm2d)> track
        )
            : base(nameof(ConvNormActivation))
        {
            this.folding = folding;
            conv = Conv2d(
                inChannels,
                outChannels,
                kernel_size: kernel,
                stride: stride,
                padding: (kernel - 1) / 2,
                groups: groups,
                bias: false
            );
            norm = BatchNorm2d(outChannels);
            register_module("0", conv);
            register_module("1", norm);
            track((conv, norm));
        }

        public override Tensor forward(Tensor input) =>
            functional.relu6(folding.Norm(norm, conv.call(input)), inplace: true);

        public string Emit(IOnnxGraph graph, string input) => graph.Relu6(graph.Conv(input, conv, norm));
    }

    /// <summary>Expand 1x1 (unless t = 1), depthwise 3x3, project 1x1 without activation; a residual when shape
    /// allows.</summary>
    private sealed class InvertedResidual : Module<Tensor, Tensor>, IOnnxBlock
    {
        private readonly Folding folding;
        private readonly Sequential conv;
        private readonly List<ConvNormActivation> activated = [];
        private readonly Conv2d project;
        private readonly BatchNorm2d projectNorm;
        private readonly bool residual;

        public InvertedResidual(
            int input,
            int output,
            int stride,
            int expansion,
            Folding folding,
            Action<(Conv2d, BatchNorm2d)> track
        )
            : base(nameof(InvertedResidual))
        {
            this.folding = folding;
            var hidden = input * expansion;
            if (expansion != 1)
                activated.Add(new ConvNormActivation(input, hidden, 1, 1, 1, folding, track));
            activated.Add(new ConvNormActivation(hidden, hidden, 3, stride, hidden, folding, track));
            // TorchVision keeps the linear projection's conv and norm as two plain entries of the block's Sequential.
            project = Conv2d(hidden, output, kernel_size: 1, bias: false);
            projectNorm = BatchNorm2d(output);
            track((project, projectNorm));
            conv = Sequential([
                .. activated.Select(
                    (l, i) => (i.ToString(System.Globalization.CultureInfo.InvariantCulture), (Module<Tensor, Tensor>)l)
                ),
                (activated.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), project),
                ((activated.Count + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), projectNorm),
            ]);
            residual = stride == 1 && input == output;
            register_module("conv", conv);
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var x = input;
            foreach (var layer in activated)
                x = layer.call(x);
            x = folding.Norm(projectNorm, project.call(x));
            return (residual ? x.add_(input) : x).MoveToOuterDisposeScope();
        }

        public string Emit(IOnnxGraph graph, string input)
        {
            var x = graph.Conv(activated.Aggregate(input, (y, layer) => layer.Emit(graph, y)), project, projectNorm);
            return residual ? graph.Add(x, input) : x;
        }
    }
}
