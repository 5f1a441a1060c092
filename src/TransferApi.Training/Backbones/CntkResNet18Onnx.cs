using Google.Protobuf;
using Onnx;
using static TorchSharp.torch;

namespace TransferApi.Training.Backbones;

/// <summary>
/// Reads the ImageNet ResNet18 that ships in the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18
/// (a CNTK 2.6 export, opset 8) into a TorchVision-named <see cref="Architectures.ResNet"/> with basic blocks
/// [2,2,2,3].
/// The graph has no meaningful tensor names, so convolutions are matched to modules by graph order
/// (a block's 1x1 shortcut comes before its first 3x3 conv) and each batch norm by the conv it consumes;
/// every shape is checked against the module, so a different file fails loudly instead of loading garbage.
/// </summary>
public static class CntkResNet18Onnx
{
    public const string ModelFile = "ResNet18Onnx/ResNet18.onnx";
    public const string PreprocessFile = "ResNetPrepOnnx/ResNetPreprocess.onnx";

    /// <summary>Module names in the order their convolutions appear in the ONNX graph, with each conv's batch
    /// norm.</summary>
    public static IEnumerable<(string Conv, string Norm)> ConvolutionsInGraphOrder()
    {
        yield return ("conv1", "bn1");
        foreach (var block in Architectures.ResNet.Blocks(bottleneck: false, [2, 2, 2, 3]))
        {
            if (block.Downsamples)
                yield return ($"{block.Prefix}.downsample.0", $"{block.Prefix}.downsample.1");
            yield return ($"{block.Prefix}.conv1", $"{block.Prefix}.bn1");
            yield return ($"{block.Prefix}.conv2", $"{block.Prefix}.bn2");
        }
    }

    public static FeatureNetwork LoadFeatureExtractor(string modelDirectory)
    {
        var graph = ParseGraph(Path.Combine(modelDirectory, ModelFile));
        var initializers = graph.Initializer.ToDictionary(t => t.Name);
        var convs = graph.Node.Where(n => n.OpType == "Conv").ToList();
        var expected = ConvolutionsInGraphOrder().ToList();
        if (convs.Count != expected.Count)
            throw new InvalidDataException(
                $"Expected {expected.Count} convolutions in the ResNet18 graph, found {convs.Count}."
            );

        var model = BackboneArchitecture.CntkResNet18.Create();
        var state = model.state_dict();
        var loaded = new HashSet<string>();
        using (no_grad())
        {
            for (var i = 0; i < convs.Count; i++)
            {
                var (convName, normName) = expected[i];
                var conv = convs[i];
                Copy(initializers[conv.Input[1]], state, $"{convName}.weight", loaded);
                var norm = graph.Node.Single(n => n.OpType == "BatchNormalization" && n.Input[0] == conv.Output[0]);
                Copy(initializers[norm.Input[1]], state, $"{normName}.weight", loaded);
                Copy(initializers[norm.Input[2]], state, $"{normName}.bias", loaded);
                Copy(initializers[norm.Input[3]], state, $"{normName}.running_mean", loaded);
                Copy(initializers[norm.Input[4]], state, $"{normName}.running_var", loaded);
            }
        }
        var missing = state
            .Keys.Where(k => !loaded.Contains(k) && !k.EndsWith("num_batches_tracked", StringComparison.Ordinal))
            .ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"ResNet18 import left parameters unset: {string.Join(", ", missing)}");
        return model;
    }

    /// <summary>The per-pixel mean image [3,224,224] in BGR order that ML.NET's ResNet preprocessing
    /// subtracts.</summary>
    public static float[] LoadMeanImage(string modelDirectory)
    {
        var graph = ParseGraph(Path.Combine(modelDirectory, PreprocessFile));
        var mean = graph.Initializer.Single(t => t.Name == "MeanImage");
        var values = mean.FloatData.Count > 0 ? mean.FloatData.ToArray() : RawFloats(mean.RawData);
        if (values.Length != 3 * 224 * 224)
            throw new InvalidDataException($"The mean image has {values.Length} values, not 3x224x224.");
        return values;
    }

    private static void Copy(TensorProto source, Dictionary<string, Tensor> state, string key, HashSet<string> loaded)
    {
        if (!state.TryGetValue(key, out var target))
            throw new InvalidDataException($"ResNet18 import: the module has no parameter '{key}'.");
        using var value = ToTensor(source);
        if (!value.shape.SequenceEqual(target.shape))
            throw new InvalidDataException(
                "ResNet18 import: "
                    + $"'{source.Name}' has "
                    + $"shape [{string.Join(",", value.shape)}] but '{key}' needs [{string.Join(",", target.shape)}]."
            );
        target.copy_(value);
        loaded.Add(key);
    }

    private static Tensor ToTensor(TensorProto proto)
    {
        if (proto.DataType != (int)TensorProto.Types.DataType.Float)
            throw new InvalidDataException($"ONNX initializer '{proto.Name}' is not float32.");
        var values = proto.FloatData.Count > 0 ? proto.FloatData.ToArray() : RawFloats(proto.RawData);
        return tensor(values, proto.Dims.ToArray());
    }

    private static float[] RawFloats(ByteString raw)
    {
        var values = new float[raw.Length / sizeof(float)];
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw.Span).CopyTo(values);
        return values;
    }

    private static GraphProto ParseGraph(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"Backbone weights not found at {path}. They are copied from the NuGet package "
                    + "Microsoft.ML.DnnImageFeaturizer.ResNet18 at build time.",
                path
            );
        using var stream = File.OpenRead(path);
        return ModelProto.Parser.ParseFrom(stream).Graph;
    }
}
