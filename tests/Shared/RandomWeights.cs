using TorchSharp.PyBridge;
using TransferApi.Training.Backbones;
using static TorchSharp.torch;

namespace TransferApi.TestSupport;

/// <summary>
/// ImageNet-style checkpoints made by the tests themselves (no weights are downloaded or committed): an
/// architecture's tensors redrawn from a seeded generator at the scale of its own initialisation (every batch
/// norm given random statistics and affine parameters, so folding has real work to check), plus the classifier keys a
/// TorchVision checkpoint carries.
/// </summary>
public static class RandomWeights
{
    public static Dictionary<string, Tensor> StateDict(BackboneArchitecture architecture, long seed = 7)
    {
        using var network = architecture.Create();
        // Every value comes from this generator, never libtorch's global one, which tests running in parallel also
        // draw from: the same seed gives the same weights in every run.
        var generator = new Generator((ulong)seed);
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var modules = network.ModulesByPath();
        foreach (var (name, value) in network.state_dict())
        {
            var copy = value.detach().clone();
            if (
                name.EndsWith("running_var", StringComparison.Ordinal)
                || (name.EndsWith(".weight", StringComparison.Ordinal) && value.dim() == 1)
            )
                copy = rand(value.shape, generator: generator).mul_(0.5).add_(0.75);
            else if (
                name.EndsWith("running_mean", StringComparison.Ordinal)
                || (name.EndsWith(".bias", StringComparison.Ordinal) && value.dim() == 1 && IsNorm(modules, name))
            )
                copy = rand(value.shape, generator: generator).sub_(0.5).mul_(0.2);
            else if (value.is_floating_point() && value.numel() > 1)
                // Redrawn at the scale the architecture's own initialisation gave this tensor.
                copy = randn(value.shape, generator: generator).mul_(value.std().item<float>());
            state[name] = copy;
        }
        foreach (var (name, shape) in ClassifierKeys(architecture))
            state[name] = randn(shape, generator: generator).mul_(0.01);
        return state;
    }

    /// <summary>The state dict as PyTorch's torch.save writes it (through TorchSharp.PyBridge).</summary>
    public static byte[] PyTorchFile(Dictionary<string, Tensor> state)
    {
        using var stream = new MemoryStream();
        PyTorchPickler.PickleStateDict(stream, state, leaveOpen: true);
        return stream.ToArray();
    }

    public static byte[] SafetensorsFile(Dictionary<string, Tensor> state)
    {
        using var stream = new MemoryStream();
        Safetensors.SaveStateDict(stream, state, leaveOpen: true);
        return stream.ToArray();
    }

    private static bool IsNorm(IReadOnlyDictionary<string, TorchSharp.torch.nn.Module> modules, string parameter) =>
        modules.TryGetValue(parameter[..parameter.LastIndexOf('.')], out var module)
        && module is TorchSharp.Modules.BatchNorm2d;

    /// <summary>The ImageNet classifier's keys as TorchVision names them (VGG's wide fc6/fc7 left out to keep test
    /// files small).</summary>
    private static IEnumerable<(string, long[])> ClassifierKeys(BackboneArchitecture architecture) =>
        architecture.Name switch
        {
            "mobilenet_v2" => [("classifier.1.weight", [1000, 1280]), ("classifier.1.bias", [1000])],
            "vgg16" => [("classifier.6.weight", [1000, 4096]), ("classifier.6.bias", [1000])],
            "inception_v3" =>
            [
                ("fc.weight", [1000, 2048]),
                ("fc.bias", [1000]),
                ("AuxLogits.fc.weight", [1000, 768]),
                ("AuxLogits.fc.bias", [1000]),
            ],
            _ => [("fc.weight", [1000, architecture.FeatureSize]), ("fc.bias", [1000])],
        };
}
