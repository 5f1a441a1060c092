using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace TransferApi.Training.Backbones.Architectures;

/// <summary>
/// TorchVision's Inception v3 without <c>AuxLogits</c> and <c>fc</c>, on 299x299 input and without
/// <c>transform_input</c> (the preprocessing does that: mean and std 0.5). Stem Conv2d_1a..Conv2d_4a with two max
/// pools; stages by grid: Mixed_5b-5d (35x35), Mixed_6a-6e (17x17), Mixed_7a-7c (8x8); 2048 pooled features.
/// </summary>
public sealed class InceptionV3 : FeatureNetwork
{
    private readonly List<(Conv2d, BatchNorm2d)> convNorms = [];
    private readonly List<Section> sections;

    public InceptionV3(BackboneArchitecture architecture)
        : base(nameof(InceptionV3), architecture)
    {
        BasicConv2d Conv(
            int input,
            int output,
            (long, long) kernel,
            (long, long)? stride = null,
            (long, long)? padding = null
        ) => new(input, output, kernel, stride ?? (1, 1), padding ?? (0, 0), Folding, convNorms.Add);
        Module<Tensor, Tensor> Add(string name, Module<Tensor, Tensor> module)
        {
            register_module(name, module);
            return module;
        }

        var stem = new[]
        {
            Add("Conv2d_1a_3x3", Conv(3, 32, (3, 3), stride: (2, 2))),
            Add("Conv2d_2a_3x3", Conv(32, 32, (3, 3))),
            Add("Conv2d_2b_3x3", Conv(32, 64, (3, 3), padding: (1, 1))),
            Add("Conv2d_3b_1x1", Conv(64, 80, (1, 1))),
            Add("Conv2d_4a_3x3", Conv(80, 192, (3, 3))),
        };
        var mixed5 = new[]
        {
            Add("Mixed_5b", new InceptionA(192, 32, Conv)),
            Add("Mixed_5c", new InceptionA(256, 64, Conv)),
            Add("Mixed_5d", new InceptionA(288, 64, Conv)),
        };
        var mixed6 = new[]
        {
            Add("Mixed_6a", new InceptionB(288, Conv)),
            Add("Mixed_6b", new InceptionC(768, 128, Conv)),
            Add("Mixed_6c", new InceptionC(768, 160, Conv)),
            Add("Mixed_6d", new InceptionC(768, 160, Conv)),
            Add("Mixed_6e", new InceptionC(768, 192, Conv)),
        };
        var mixed7 = new[]
        {
            Add("Mixed_7a", new InceptionD(768, Conv)),
            Add("Mixed_7b", new InceptionE(1280, Conv)),
            Add("Mixed_7c", new InceptionE(2048, Conv)),
        };
        sections =
        [
            new(
                ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"],
                x =>
                {
                    x = stem[2].call(stem[1].call(stem[0].call(x)));
                    x = functional.max_pool2d(x, 3, 2);
                    x = stem[4].call(stem[3].call(x));
                    return functional.max_pool2d(x, 3, 2);
                },
                (graph, x) =>
                {
                    x = Emit(graph, x, stem[0], stem[1], stem[2]);
                    x = graph.MaxPool(x, 3, 2);
                    return graph.MaxPool(Emit(graph, x, stem[3], stem[4]), 3, 2);
                }
            ),
            Section.Of(["Mixed_5b", "Mixed_5c", "Mixed_5d"], mixed5),
            Section.Of(["Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"], mixed6),
            Section.Of(["Mixed_7a", "Mixed_7b", "Mixed_7c"], mixed7),
        ];
    }

    private static string Emit(IOnnxGraph graph, string input, params Module<Tensor, Tensor>[] convs) =>
        convs.Aggregate(input, (x, conv) => ((IOnnxBlock)conv).Emit(graph, x));

    protected override IReadOnlyList<Section> Sections => sections;

    protected override IEnumerable<(Conv2d, BatchNorm2d)> ConvNormPairs() => convNorms;

    private delegate BasicConv2d ConvFactory(
        int input,
        int output,
        (long, long) kernel,
        (long, long)? stride = null,
        (long, long)? padding = null
    );

    private static Tensor AveragePool3x3(Tensor x) => functional.avg_pool2d(x, 3, 1, 1);

    private sealed class BasicConv2d : Module<Tensor, Tensor>, IOnnxBlock
    {
        private readonly Folding folding;
        private readonly Conv2d conv;
        private readonly BatchNorm2d bn;

        public BasicConv2d(
            int input,
            int output,
            (long, long) kernel,
            (long, long) stride,
            (long, long) padding,
            Folding folding,
            Action<(Conv2d, BatchNorm2d)> track
        )
            : base(nameof(BasicConv2d))
        {
            this.folding = folding;
            conv = Conv2d(input, output, kernel, stride: stride, padding: padding, bias: false);
            // Inception's batch norms use epsilon 0.001 (TorchVision's BasicConv2d).
            bn = BatchNorm2d(output, eps: 0.001);
            RegisterComponents();
            track((conv, bn));
        }

        public override Tensor forward(Tensor input) =>
            functional.relu(folding.Norm(bn, conv.call(input)), inplace: true);

        public string Emit(IOnnxGraph graph, string input) => graph.Relu(graph.Conv(input, conv, bn));
    }

    private sealed class InceptionA : Module<Tensor, Tensor>, IOnnxBlock
    {
        private readonly BasicConv2d branch1x1,
            branch5x5_1,
            branch5x5_2,
            branch3x3dbl_1,
            branch3x3dbl_2,
            branch3x3dbl_3,
            branch_pool;

        public InceptionA(int input, int poolFeatures, ConvFactory conv)
            : base(nameof(InceptionA))
        {
            branch1x1 = conv(input, 64, (1, 1));
            branch5x5_1 = conv(input, 48, (1, 1));
            branch5x5_2 = conv(48, 64, (5, 5), padding: (2, 2));
            branch3x3dbl_1 = conv(input, 64, (1, 1));
            branch3x3dbl_2 = conv(64, 96, (3, 3), padding: (1, 1));
            branch3x3dbl_3 = conv(96, 96, (3, 3), padding: (1, 1));
            branch_pool = conv(input, poolFeatures, (1, 1));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            return cat(
                    [
                        branch1x1.call(x),
                        branch5x5_2.call(branch5x5_1.call(x)),
                        branch3x3dbl_3.call(branch3x3dbl_2.call(branch3x3dbl_1.call(x))),
                        branch_pool.call(AveragePool3x3(x)),
                    ],
                    1
                )
                .MoveToOuterDisposeScope();
        }

        public string Emit(IOnnxGraph g, string x) =>
            g.Concat(
                branch1x1.Emit(g, x),
                branch5x5_2.Emit(g, branch5x5_1.Emit(g, x)),
                branch3x3dbl_3.Emit(g, branch3x3dbl_2.Emit(g, branch3x3dbl_1.Emit(g, x))),
                branch_pool.Emit(g, g.AveragePool(x, 3, 1, 1))
            );
    }

    private sealed class InceptionB : Module<Tensor, Tensor>, IOnnxBlock
    {
        private readonly BasicConv2d branch3x3,
            branch3x3dbl_1,
            branch3x3dbl_2,
            branch3x3dbl_3;

        public InceptionB(int input, ConvFactory conv)
            : base(nameof(InceptionB))
        {
            branch3x3 = conv(input, 384, (3, 3), stride: (2, 2));
            branch3x3dbl_1 = conv(input, 64, (1, 1));
            branch3x3dbl_2 = conv(64, 96, (3, 3), padding: (1, 1));
            branch3x3dbl_3 = conv(96, 96, (3, 3), stride: (2, 2));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            return cat(
                    [
                        branch3x3.call(x),
                        branch3x3dbl_3.call(branch3x3dbl_2.call(branch3x3dbl_1.call(x))),
                        functional.max_pool2d(x, 3, 2),
                    ],
                    1
                )
                .MoveToOuterDisposeScope();
        }

        public string Emit(IOnnxGraph g, string x) =>
            g.Concat(
                branch3x3.Emit(g, x),
                branch3x3dbl_3.Emit(g, branch3x3dbl_2.Emit(g, branch3x3dbl_1.Emit(g, x))),
                g.MaxPool(x, 3, 2)
            );
    }

    private sealed class InceptionC : Module<Tensor, Tensor>, IOnnxBlock
    {
        private readonly BasicConv2d branch1x1,
            branch7x7_1,
            branch7x7_2,
            branch7x7_3,
            branch7x7dbl_1,
            branch7x7dbl_2,
            branch7x7dbl_3,
            branch7x7dbl_4,
            branch7x7dbl_5,
            branch_pool;

        public InceptionC(int input, int c7, ConvFactory conv)
            : base(nameof(InceptionC))
        {
            branch1x1 = conv(input, 192, (1, 1));
            branch7x7_1 = conv(input, c7, (1, 1));
            branch7x7_2 = conv(c7, c7, (1, 7), padding: (0, 3));
            branch7x7_3 = conv(c7, 192, (7, 1), padding: (3, 0));
            branch7x7dbl_1 = conv(input, c7, (1, 1));
            branch7x7dbl_2 = conv(c7, c7, (7, 1), padding: (3, 0));
            branch7x7dbl_3 = conv(c7, c7, (1, 7), padding: (0, 3));
            branch7x7dbl_4 = conv(c7, c7, (7, 1), padding: (3, 0));
            branch7x7dbl_5 = conv(c7, 192, (1, 7), padding: (0, 3));
            branch_pool = conv(input, 192, (1, 1));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var dbl = branch7x7dbl_3.call(branch7x7dbl_2.call(branch7x7dbl_1.call(x)));
            return cat(
                    [
                        branch1x1.call(x),
                        branch7x7_3.call(branch7x7_2.call(branch7x7_1.call(x))),
                        branch7x7dbl_5.call(branch7x7dbl_4.call(dbl)),
                        branch_pool.call(AveragePool3x3(x)),
                    ],
                    1
                )
                .MoveToOuterDisposeScope();
        }

        public string Emit(IOnnxGraph g, string x)
        {
            var dbl = branch7x7dbl_3.Emit(g, branch7x7dbl_2.Emit(g, branch7x7dbl_1.Emit(g, x)));
            return g.Concat(
                branch1x1.Emit(g, x),
                branch7x7_3.Emit(g, branch7x7_2.Emit(g, branch7x7_1.Emit(g, x))),
                branch7x7dbl_5.Emit(g, branch7x7dbl_4.Emit(g, dbl)),
                branch_pool.Emit(g, g.AveragePool(x, 3, 1, 1))
            );
        }
    }

    private sealed class InceptionD : Module<Tensor, Tensor>, IOnnxBlock
    {
        private readonly BasicConv2d branch3x3_1,
            branch3x3_2,
            branch7x7x3_1,
            branch7x7x3_2,
            branch7x7x3_3,
            branch7x7x3_4;

        public InceptionD(int input, ConvFactory conv)
            : base(nameof(InceptionD))
        {
            branch3x3_1 = conv(input, 192, (1, 1));
            branch3x3_2 = conv(192, 320, (3, 3), stride: (2, 2));
            branch7x7x3_1 = conv(input, 192, (1, 1));
            branch7x7x3_2 = conv(192, 192, (1, 7), padding: (0, 3));
            branch7x7x3_3 = conv(192, 192, (7, 1), padding: (3, 0));
            branch7x7x3_4 = conv(192, 192, (3, 3), stride: (2, 2));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            return cat(
                    [
                        branch3x3_2.call(branch3x3_1.call(x)),
                        branch7x7x3_4.call(branch7x7x3_3.call(branch7x7x3_2.call(branch7x7x3_1.call(x)))),
                        functional.max_pool2d(x, 3, 2),
                    ],
                    1
                )
                .MoveToOuterDisposeScope();
        }

        public string Emit(IOnnxGraph g, string x) =>
            g.Concat(
                branch3x3_2.Emit(g, branch3x3_1.Emit(g, x)),
                branch7x7x3_4.Emit(g, branch7x7x3_3.Emit(g, branch7x7x3_2.Emit(g, branch7x7x3_1.Emit(g, x)))),
                g.MaxPool(x, 3, 2)
            );
    }

    private sealed class InceptionE : Module<Tensor, Tensor>, IOnnxBlock
    {
        private readonly BasicConv2d branch1x1,
            branch3x3_1,
            branch3x3_2a,
            branch3x3_2b,
            branch3x3dbl_1,
            branch3x3dbl_2,
            branch3x3dbl_3a,
            branch3x3dbl_3b,
            branch_pool;

        public InceptionE(int input, ConvFactory conv)
            : base(nameof(InceptionE))
        {
            branch1x1 = conv(input, 320, (1, 1));
            branch3x3_1 = conv(input, 384, (1, 1));
            branch3x3_2a = conv(384, 384, (1, 3), padding: (0, 1));
            branch3x3_2b = conv(384, 384, (3, 1), padding: (1, 0));
            branch3x3dbl_1 = conv(input, 448, (1, 1));
            branch3x3dbl_2 = conv(448, 384, (3, 3), padding: (1, 1));
            branch3x3dbl_3a = conv(384, 384, (1, 3), padding: (0, 1));
            branch3x3dbl_3b = conv(384, 384, (3, 1), padding: (1, 0));
            branch_pool = conv(input, 192, (1, 1));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var b3 = branch3x3_1.call(x);
            var dbl = branch3x3dbl_2.call(branch3x3dbl_1.call(x));
            return cat(
                    [
                        branch1x1.call(x),
                        branch3x3_2a.call(b3),
                        branch3x3_2b.call(b3),
                        branch3x3dbl_3a.call(dbl),
                        branch3x3dbl_3b.call(dbl),
                        branch_pool.call(AveragePool3x3(x)),
                    ],
                    1
                )
                .MoveToOuterDisposeScope();
        }

        public string Emit(IOnnxGraph g, string x)
        {
            var b3 = branch3x3_1.Emit(g, x);
            var dbl = branch3x3dbl_2.Emit(g, branch3x3dbl_1.Emit(g, x));
            return g.Concat(
                branch1x1.Emit(g, x),
                branch3x3_2a.Emit(g, b3),
                branch3x3_2b.Emit(g, b3),
                branch3x3dbl_3a.Emit(g, dbl),
                branch3x3dbl_3b.Emit(g, dbl),
                branch_pool.Emit(g, g.AveragePool(x, 3, 1, 1))
            );
        }
    }
}
