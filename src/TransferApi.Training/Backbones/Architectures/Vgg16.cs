using TorchSharp.Modules;
using static TorchSharp.torch.nn;

namespace TransferApi.Training.Backbones.Architectures;

/// <summary>
/// TorchVision's VGG16 (configuration D, no batch norm) without <c>avgpool</c> and <c>classifier</c>: the 13
/// convolutions of <c>features</c> in five blocks, each ending in a 2x2 max pool, then global average pooling to
/// 512 features (Keras's <c>pooling='avg'</c>). The first block is the stem; blocks 2-5 are the stages.
/// </summary>
public sealed class Vgg16 : FeatureNetwork
{
    private static readonly int[][] BlockWidths =
    [
        [64, 64],
        [128, 128],
        [256, 256, 256],
        [512, 512, 512],
        [512, 512, 512],
    ];

    private readonly List<Section> sections = [];

    public Vgg16(BackboneArchitecture architecture)
        : base(nameof(Vgg16), architecture)
    {
        var features = new IndexedModules();
        var (index, input) = (0, 3);
        foreach (var widths in BlockWidths)
        {
            var convs = new List<Conv2d>();
            foreach (var width in widths)
            {
                var conv = Conv2d(input, width, kernel_size: 3, padding: 1);
                features.Add(index, conv);
                convs.Add(conv);
                // conv, ReLU
                index += 2;
                input = width;
            }
            var first = index - 2 * widths.Length;
            sections.Add(
                new Section(
                    Enumerable.Range(0, widths.Length).Select(i => $"features.{first + 2 * i}").ToList(),
                    x =>
                    {
                        foreach (var conv in convs)
                            x = functional.relu(conv.call(x), inplace: true);
                        return functional.max_pool2d(x, 2, 2);
                    },
                    (graph, x) => graph.MaxPool(convs.Aggregate(x, (y, conv) => graph.Relu(graph.Conv(y, conv))), 2, 2)
                )
            );
            // MaxPool
            index += 1;
        }
        register_module("features", features);
    }

    protected override IReadOnlyList<Section> Sections => sections;

    protected override IEnumerable<(Conv2d, BatchNorm2d)> ConvNormPairs() => [];

    /// <summary>A container whose children keep their TorchVision indices (parameter-free layers leave gaps).</summary>
    private sealed class IndexedModules() : Module(nameof(IndexedModules))
    {
        public void Add(int index, Module module) =>
            register_module(index.ToString(System.Globalization.CultureInfo.InvariantCulture), module);
    }
}
