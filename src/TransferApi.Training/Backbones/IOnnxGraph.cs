using TorchSharp.Modules;

namespace TransferApi.Training.Backbones;

/// <summary>
/// The operations networks are written in, as ONNX nodes: each architecture describes its graph once more next to
/// its forward pass (<see cref="FeatureNetwork"/> sections), in these terms. Values are named by strings.
/// </summary>
public interface IOnnxGraph
{
    /// <summary>The convolution (its stride, padding, groups and weights), then the batch norm when given (with its
    /// epsilon).</summary>
    string Conv(string input, Conv2d conv, BatchNorm2d? norm = null);
    string Relu(string input);
    string Relu6(string input);
    string MaxPool(string input, long kernel, long stride, long padding = 0);

    /// <summary>Average pooling counting padded zeros, as PyTorch's default.</summary>
    string AveragePool(string input, long kernel, long stride, long padding);
    string Add(string a, string b);
    string Concat(params string[] inputs);
}

/// <summary>A block that can describe itself as ONNX nodes.</summary>
public interface IOnnxBlock
{
    string Emit(IOnnxGraph graph, string input);
}
