using Google.Protobuf;
using Onnx;
using TorchSharp.Modules;
using TransferApi.Training.Backbones;
using static TorchSharp.torch;

namespace TransferApi.Training.Export;

/// <summary>
/// Writes an <see cref="ExportedClassifier"/> as an ONNX model (opset 13) built node by node from its architecture's
/// own description (<see cref="FeatureNetwork.EmitOnnx"/>) and weights: input "pixels" [N,3,S,S] (0..255 in the
/// model's channel order, centre-cropped; normalization is inside), output "probabilities".
/// </summary>
public static class OnnxExport
{
    public const string InputName = "pixels";
    public const string OutputName = "probabilities";

    public static byte[] Write(ExportedClassifier model)
    {
        var checkpoint = model.Checkpoint;
        var spec = checkpoint.Preprocessing;
        var weights = model.state_dict();
        var graph = new GraphProto { Name = "transferapi-classifier" };
        var builder = new GraphBuilder(graph);

        var x = builder.Node(
            "Mul",
            [
                builder.Node("Sub", [InputName, builder.Initializer(weights["input_offset"])]),
                builder.Initializer(weights["input_multiplier"]),
            ]
        );
        x = model.Backbone.EmitOnnx(builder, x);
        x = builder.Node("Flatten", [builder.Node("GlobalAveragePool", [x])], Int("axis", 1));
        if (checkpoint.Head.Kind == HeadKind.Linear)
        {
            x = builder.Gemm(x, weights["head.weight"], weights["head.bias"]);
        }
        else
        {
            // The MLP head's modules are 0 (Linear), 1 (ReLU), 2 (dropout: identity at inference), 3 (Linear).
            x = builder.Relu(builder.Gemm(x, weights["head.0.weight"], weights["head.0.bias"]));
            x = builder.Gemm(x, weights["head.3.weight"], weights["head.3.bias"]);
        }
        // Calibration: the logits scaled by 1 / temperature.
        x = builder.Node("Mul", [x, builder.Initializer(weights["inverse_temperature"])]);
        builder.Node("Softmax", [x], [OutputName], Int("axis", 1));

        graph.Input.Add(ValueInfo(InputName, [-1, 3, spec.InputSize, spec.InputSize]));
        graph.Output.Add(ValueInfo(OutputName, [-1, checkpoint.Labels.Count]));
        var onnx = new ModelProto
        {
            IrVersion = 7,
            ProducerName = "TransferApi",
            Graph = graph,
            DocString =
                "Classes (output "
                + "order): "
                + $"{string.Join(", ", checkpoint.Labels)}. Backbone: {model.Backbone.Architecture.Description}. "
                + $"Input: {spec.ChannelOrder} 0..255 [N,3,{spec.InputSize},{spec.InputSize}] after {spec.Resize} "
                + "(normalization is inside).",
        };
        onnx.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });
        return onnx.ToByteArray();
    }

    private sealed class GraphBuilder(GraphProto graph) : IOnnxGraph
    {
        private int next;

        public string Initializer(Tensor tensor)
        {
            using var value = tensor.detach().contiguous();
            var proto = new TensorProto { Name = $"w{next++}", DataType = (int)TensorProto.Types.DataType.Float };
            proto.Dims.AddRange(value.shape);
            proto.RawData = ByteString.CopyFrom(
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(value.data<float>().ToArray().AsSpan())
            );
            graph.Initializer.Add(proto);
            return proto.Name;
        }

        public string Node(string op, string[] inputs, params AttributeProto[] attributes) =>
            Node(op, inputs, [$"{op.ToLowerInvariant()}_{next++}"], attributes);

        public string Node(string op, string[] inputs, string[] outputs, params AttributeProto[] attributes)
        {
            var node = new NodeProto { OpType = op, Name = outputs[0] };
            node.Input.AddRange(inputs);
            node.Output.AddRange(outputs);
            node.Attribute.AddRange(attributes);
            graph.Node.Add(node);
            return outputs[0];
        }

        public string Conv(string input, Conv2d conv, BatchNorm2d? norm = null)
        {
            var (padding, stride, kernel) = (conv.padding!, conv.stride, conv.kernel_size);
            string[] inputs = conv.bias is { } bias
                ? [input, Initializer(conv.weight!), Initializer(bias)]
                : [input, Initializer(conv.weight!)];
            var x = Node(
                "Conv",
                inputs,
                Ints("kernel_shape", kernel),
                Ints("strides", stride),
                Ints("pads", padding[0], padding[1], padding[0], padding[1]),
                Ints("dilations", conv.dilation),
                Int("group", conv.groups)
            );
            if (norm is null)
                return x;
            return Node(
                "BatchNormalization",
                [
                    x,
                    Initializer(norm.weight!),
                    Initializer(norm.bias!),
                    Initializer(norm.running_mean!),
                    Initializer(norm.running_var!),
                ],
                new AttributeProto
                {
                    Name = "epsilon",
                    Type = AttributeProto.Types.AttributeType.Float,
                    F = (float)norm.eps,
                }
            );
        }

        public string Relu(string input) => Node("Relu", [input]);

        private (string Low, string High)? clipBounds;

        public string Relu6(string input)
        {
            if (clipBounds is null)
            {
                using var low = tensor(0f);
                using var high = tensor(6f);
                clipBounds = (Initializer(low), Initializer(high));
            }
            return Node("Clip", [input, clipBounds.Value.Low, clipBounds.Value.High]);
        }

        public string MaxPool(string input, long kernel, long stride, long padding = 0) =>
            Node(
                "MaxPool",
                [input],
                Ints("kernel_shape", kernel, kernel),
                Ints("strides", stride, stride),
                Ints("pads", padding, padding, padding, padding)
            );

        public string AveragePool(string input, long kernel, long stride, long padding) =>
            Node(
                "AveragePool",
                [input],
                Ints("kernel_shape", kernel, kernel),
                Ints("strides", stride, stride),
                Ints("pads", padding, padding, padding, padding),
                Int("count_include_pad", 1)
            );

        public string Add(string a, string b) => Node("Add", [a, b]);

        public string Concat(params string[] inputs) => Node("Concat", inputs, Int("axis", 1));

        public string Gemm(string input, Tensor weight, Tensor bias) =>
            Node("Gemm", [input, Initializer(weight), Initializer(bias)], Int("transB", 1));
    }

    private static AttributeProto Int(string name, long value) =>
        new()
        {
            Name = name,
            Type = AttributeProto.Types.AttributeType.Int,
            I = value,
        };

    private static AttributeProto Ints(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    private static ValueInfoProto ValueInfo(string name, long[] shape)
    {
        var tensorType = new TypeProto.Types.Tensor
        {
            ElemType = (int)TensorProto.Types.DataType.Float,
            Shape = new TensorShapeProto(),
        };
        foreach (var dim in shape)
            tensorType.Shape.Dim.Add(
                dim < 0
                    ? new TensorShapeProto.Types.Dimension { DimParam = "N" }
                    : new TensorShapeProto.Types.Dimension { DimValue = dim }
            );
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = tensorType },
        };
    }
}
