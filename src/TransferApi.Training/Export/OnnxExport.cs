using Google.Protobuf;
using Onnx;
using TransferApi.Training.Backbones;
using TransferApi.Training.Backbones.Architectures;
using TransferApi.Training.Training;
using static TorchSharp.torch;

namespace TransferApi.Training.Export;

/// <summary>
/// Writes an <see cref="ExportedClassifier"/> as an ONNX model (opset 13) built node by node from its
/// architecture and weights: input "pixels" [N,3,S,S] (BGR 0..255, centre-cropped), output "probabilities".
/// </summary>
public static class OnnxExport
{
    public const string InputName = "pixels";
    public const string OutputName = "probabilities";

    /// <summary>Whether this writer knows the architecture's graph (the ResNet family so far).</summary>
    public static bool Supports(BackboneArchitecture architecture) =>
        architecture == BackboneArchitecture.ResNet18 || architecture == BackboneArchitecture.ResNet34 || architecture == BackboneArchitecture.ResNet50
        || architecture == BackboneArchitecture.CntkResNet18;

    public static byte[] Write(ExportedClassifier model)
    {
        if (model.Backbone is not ResNet resnet) throw new NotSupportedException($"ONNX export does not support {model.Backbone.Architecture.Name} yet.");
        var weights = model.state_dict();
        var checkpoint = model.Checkpoint;
        var size = checkpoint.Preprocessing.InputSize;
        var graph = new GraphProto { Name = "transferapi-classifier" };
        var builder = new GraphBuilder(graph, weights);

        var x = builder.Node("Mul", [builder.Node("Sub", [InputName, builder.Initializer("input_offset")]), builder.Initializer("input_multiplier")]);
        x = builder.ConvNorm(x, "backbone.conv1", "backbone.bn1", stride: 2, pad: 3);
        x = builder.Node("Relu", [x]);
        x = builder.Node("MaxPool", [x], Ints("kernel_shape", 3, 3), Ints("strides", 2, 2), Ints("pads", 1, 1, 1, 1));
        foreach (var block in ResNet.Blocks(resnet.Bottleneck, resnet.BlocksPerStage))
        {
            var prefix = $"backbone.{block.Prefix}";
            string y;
            if (block.Bottleneck)
            {
                y = builder.Node("Relu", [builder.ConvNorm(x, $"{prefix}.conv1", $"{prefix}.bn1", stride: 1, pad: 0)]);
                y = builder.Node("Relu", [builder.ConvNorm(y, $"{prefix}.conv2", $"{prefix}.bn2", block.Stride, pad: 1)]);
                y = builder.ConvNorm(y, $"{prefix}.conv3", $"{prefix}.bn3", stride: 1, pad: 0);
            }
            else
            {
                y = builder.Node("Relu", [builder.ConvNorm(x, $"{prefix}.conv1", $"{prefix}.bn1", block.Stride, pad: 1)]);
                y = builder.ConvNorm(y, $"{prefix}.conv2", $"{prefix}.bn2", stride: 1, pad: 1);
            }
            var identity = block.Downsamples ? builder.ConvNorm(x, $"{prefix}.downsample.0", $"{prefix}.downsample.1", block.Stride, pad: 0) : x;
            x = builder.Node("Relu", [builder.Node("Add", [y, identity])]);
        }
        x = builder.Node("Flatten", [builder.Node("GlobalAveragePool", [x])], Int("axis", 1));
        if (checkpoint.Head.Kind == HeadKind.Linear)
        {
            x = builder.Gemm(x, "head");
        }
        else
        {
            // The MLP head's modules are 0 (Linear), 1 (ReLU), 2 (dropout: identity at inference), 3 (Linear).
            x = builder.Node("Relu", [builder.Gemm(x, "head.0")]);
            x = builder.Gemm(x, "head.3");
        }
        builder.Node("Softmax", [x], [OutputName], Int("axis", 1));

        graph.Input.Add(ValueInfo(InputName, [-1, 3, size, size]));
        graph.Output.Add(ValueInfo(OutputName, [-1, checkpoint.Labels.Count]));
        var onnx = new ModelProto
        {
            IrVersion = 7,
            ProducerName = "TransferApi",
            Graph = graph,
            DocString = $"Classes (output order): {string.Join(", ", checkpoint.Labels)}. Input: {checkpoint.Preprocessing.ChannelOrder} 0..255 [N,3,{size},{size}] after {checkpoint.Preprocessing.Resize} (normalization is inside).",
        };
        onnx.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });
        return onnx.ToByteArray();
    }

    private sealed class GraphBuilder(GraphProto graph, Dictionary<string, Tensor> weights)
    {
        private int next;

        public string Initializer(string name)
        {
            using var value = weights[name].contiguous();
            var proto = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
            proto.Dims.AddRange(value.shape);
            proto.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(value.data<float>().ToArray().AsSpan()));
            graph.Initializer.Add(proto);
            return name;
        }

        public string Node(string op, string[] inputs, params AttributeProto[] attributes) => Node(op, inputs, [$"{op.ToLowerInvariant()}_{next++}"], attributes);

        public string Node(string op, string[] inputs, string[] outputs, params AttributeProto[] attributes)
        {
            var node = new NodeProto { OpType = op, Name = outputs[0] };
            node.Input.AddRange(inputs);
            node.Output.AddRange(outputs);
            node.Attribute.AddRange(attributes);
            graph.Node.Add(node);
            return outputs[0];
        }

        public string ConvNorm(string input, string conv, string norm, int stride, int pad)
        {
            var kernel = (int)weights[$"{conv}.weight"].shape[2];
            var convolved = Node("Conv", [input, Initializer($"{conv}.weight")],
                Ints("kernel_shape", kernel, kernel), Ints("strides", stride, stride), Ints("pads", pad, pad, pad, pad));
            return Node("BatchNormalization",
                [convolved, Initializer($"{norm}.weight"), Initializer($"{norm}.bias"), Initializer($"{norm}.running_mean"), Initializer($"{norm}.running_var")],
                // ResNet's batch norms use BatchNorm2d's default epsilon.
                new AttributeProto { Name = "epsilon", Type = AttributeProto.Types.AttributeType.Float, F = 1e-5f });
        }

        public string Gemm(string input, string linear) =>
            Node("Gemm", [input, Initializer($"{linear}.weight"), Initializer($"{linear}.bias")], Int("transB", 1));
    }

    private static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    private static AttributeProto Ints(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    private static ValueInfoProto ValueInfo(string name, long[] shape)
    {
        var tensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = new TensorShapeProto() };
        foreach (var dim in shape)
            tensorType.Shape.Dim.Add(dim < 0 ? new TensorShapeProto.Types.Dimension { DimParam = "N" } : new TensorShapeProto.Types.Dimension { DimValue = dim });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensorType } };
    }
}
