using TransferApi.Training.Imaging;
using static TorchSharp.torch;

namespace TransferApi.Training.Backbones;

/// <summary>
/// A frozen pretrained network with the preprocessing its weights expect. Thread-safe for inference:
/// its parameters never change after loading and every call runs under inference mode.
/// </summary>
public sealed class Backbone : IDisposable
{
    private readonly FeatureNetwork network;

    // What inference runs: a copy with batch norms folded, channels-last. The unfolded network stays for
    // fine-tuning tails and exports.
    private readonly FeatureNetwork inference;

    public string Id { get; }
    public int FeatureSize => network.FeatureSize;
    public int Stages => network.StageCount;
    public BackboneArchitecture Architecture => network.Architecture;
    public ImagePreprocessor Preprocessor { get; }
    public long ParameterCount { get; }

    public Backbone(string id, FeatureNetwork network, ImagePreprocessor preprocessor)
    {
        Id = id;
        Preprocessor = preprocessor;
        this.network = network;
        foreach (var p in network.parameters())
            p.requires_grad = false;
        // Frozen batch norm must use its ImageNet running statistics, never batch statistics.
        network.eval();
        ParameterCount = network.parameters().Sum(p => p.numel());
        inference = network.Architecture.Create();
        inference.load_state_dict(network.state_dict());
        inference.FoldForInference();
    }

    /// <summary>Features [N, FeatureSize] of a preprocessed batch, as an ordinary tensor usable in autograd
    /// later.</summary>
    public Tensor Forward(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        Tensor features;
        using (inference_mode())
        {
            features = inference.call(pixels);
        }
        // Inference-mode tensors may not be saved for backward; a clone made outside inference mode is a normal tensor.
        return features.clone().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The frozen network's activation entering stage <paramref name="firstTrainableStage"/>, as an ordinary tensor:
    /// the input of a fine-tuned <see cref="FeatureTail"/>, computed once per image.
    /// </summary>
    public Tensor Activations(
        IReadOnlyList<byte[]> images,
        int firstTrainableStage,
        IReadOnlyList<ViewTransform?>? transforms = null
    )
    {
        using var pixels = Preprocessor.ToTensor(images, transforms);
        return Activations(pixels, firstTrainableStage);
    }

    /// <summary>As <see cref="Activations(IReadOnlyList{byte[]}, int, IReadOnlyList{ViewTransform?}?)"/>, for an
    /// already preprocessed batch.</summary>
    public Tensor Activations(Tensor pixels, int firstTrainableStage)
    {
        using var scope = NewDisposeScope();
        Tensor activation;
        using (inference_mode())
        {
            activation = inference.Prefix(pixels, firstTrainableStage);
        }
        return activation.clone().MoveToOuterDisposeScope();
    }

    /// <summary>A trainable copy of the last <paramref name="stages"/> stages, starting from the pretrained
    /// weights.</summary>
    public FeatureTail CreateTail(int stages) => new(network, Stages - stages);

    /// <summary>Decodes, preprocesses and runs encoded images through the network.</summary>
    public Tensor ExtractFeatures(IReadOnlyList<byte[]> images, IReadOnlyList<ViewTransform?>? transforms = null)
    {
        using var pixels = Preprocessor.ToTensor(images, transforms);
        return Forward(pixels);
    }

    /// <summary>The unfolded network, for exports and for tests that inspect gradients; it stays frozen.</summary>
    public FeatureNetwork Network => network;

    public void Dispose()
    {
        inference.Dispose();
        network.Dispose();
    }
}

/// <summary>The backbones this build ships; others are registered from weight files (<see
/// cref="WeightsImport"/>).</summary>
public static class BackboneCatalog
{
    public const string ResNet18ImageNet = "resnet18-imagenet";

    public static IReadOnlyList<string> BuiltIn { get; } = [ResNet18ImageNet];

    /// <summary>Where the build puts the pretrained files (copied from their NuGet package).</summary>
    public static string DefaultModelDirectory => Path.Combine(AppContext.BaseDirectory, "Backbones", ResNet18ImageNet);

    public static Backbone LoadBuiltIn(string id, string? modelDirectory = null, ImageLimits? limits = null)
    {
        if (id != ResNet18ImageNet)
            throw new ArgumentException(
                $"Unknown built-in backbone '{id}'. Built in: {string.Join(", ", BuiltIn)}.",
                nameof(id)
            );
        var directory = modelDirectory ?? DefaultModelDirectory;
        var network = CntkResNet18Onnx.LoadFeatureExtractor(directory);
        var preprocessor = new ImagePreprocessor(
            PreprocessingSpec.CntkResNet,
            limits ?? new ImageLimits(),
            CntkResNet18Onnx.LoadMeanImage(directory)
        );
        return new Backbone(id, network, preprocessor);
    }

    /// <summary>A registered backbone from its stored weights (TorchSharp format, as <see cref="SaveWeights"/> wrote
    /// them).</summary>
    public static Backbone Load(
        string id,
        BackboneArchitecture architecture,
        byte[] weights,
        PreprocessingSpec preprocessing,
        ImageLimits? limits = null
    )
    {
        var network = architecture.Create();
        try
        {
            using var stream = new MemoryStream(weights, writable: false);
            network.load(stream);
            return new Backbone(id, network, new ImagePreprocessor(preprocessing, limits ?? new ImageLimits()));
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>The canonical stored form of imported weights: float32, the architecture's own names, TorchSharp's
    /// format.</summary>
    public static byte[] SaveWeights(FeatureNetwork network)
    {
        using var stream = new MemoryStream();
        network.save(stream);
        return stream.ToArray();
    }
}
