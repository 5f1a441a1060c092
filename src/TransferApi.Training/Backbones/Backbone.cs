using TransferApi.Training.Imaging;
using static TorchSharp.torch;

namespace TransferApi.Training.Backbones;

/// <summary>
/// A frozen pretrained network with the preprocessing its weights expect. Thread-safe for inference:
/// its parameters never change after loading and every call runs under inference mode.
/// </summary>
public sealed class Backbone : IDisposable
{
    private readonly ResNetFeatureExtractor network;
    // What inference runs: the same network with batch norm folded, channels-last.
    private readonly FoldedResNet inference;

    public string Id { get; }
    public int FeatureSize { get; }
    public ImagePreprocessor Preprocessor { get; }
    public long ParameterCount { get; }

    public Backbone(string id, ResNetFeatureExtractor network, int featureSize, ImagePreprocessor preprocessor)
    {
        Id = id;
        FeatureSize = featureSize;
        Preprocessor = preprocessor;
        this.network = network;
        foreach (var p in network.parameters()) p.requires_grad = false;
        // Frozen batch norm must use its ImageNet running statistics, never batch statistics.
        network.eval();
        ParameterCount = network.parameters().Sum(p => p.numel());
        inference = new FoldedResNet(network);
    }

    /// <summary>Features [N, FeatureSize] of a preprocessed batch, as an ordinary tensor usable in autograd later.</summary>
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
    /// the input of a fine-tuned <see cref="ResNetTail"/>, computed once per image.
    /// </summary>
    public Tensor Activations(IReadOnlyList<byte[]> images, int firstTrainableStage, IReadOnlyList<ViewTransform?>? transforms = null)
    {
        using var pixels = Preprocessor.ToTensor(images, transforms);
        return Activations(pixels, firstTrainableStage);
    }

    /// <summary>As <see cref="Activations(IReadOnlyList{byte[]}, int, IReadOnlyList{ViewTransform?}?)"/>, for an already preprocessed batch.</summary>
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

    /// <summary>A trainable copy of the last <paramref name="stages"/> stages, starting from the pretrained weights.</summary>
    public ResNetTail CreateTail(int stages) => new(network, 4 - stages);

    /// <summary>Decodes, preprocesses and runs encoded images through the network.</summary>
    public Tensor ExtractFeatures(IReadOnlyList<byte[]> images, IReadOnlyList<ViewTransform?>? transforms = null)
    {
        using var pixels = Preprocessor.ToTensor(images, transforms);
        return Forward(pixels);
    }

    /// <summary>The network, for tests that inspect gradients; it stays frozen.</summary>
    public ResNetFeatureExtractor Network => network;

    public void Dispose()
    {
        inference.Dispose();
        network.Dispose();
        Preprocessor.Dispose();
    }
}

/// <summary>The backbones this build can load; each id names weights plus preprocessing.</summary>
public static class BackboneCatalog
{
    public const string ResNet18ImageNet = "resnet18-imagenet";

    public static IReadOnlyList<string> Ids { get; } = [ResNet18ImageNet];

    /// <summary>Where the build puts the pretrained files (copied from their NuGet package).</summary>
    public static string DefaultModelDirectory => Path.Combine(AppContext.BaseDirectory, "Backbones", ResNet18ImageNet);

    public static Backbone Load(string id, string? modelDirectory = null, ImageLimits? limits = null)
    {
        if (id != ResNet18ImageNet) throw new ArgumentException($"Unknown backbone '{id}'. Known: {string.Join(", ", Ids)}.", nameof(id));
        var directory = modelDirectory ?? DefaultModelDirectory;
        var network = CntkResNet18Onnx.LoadFeatureExtractor(directory);
        var preprocessor = new ImagePreprocessor(PreprocessingSpec.CntkResNet, CntkResNet18Onnx.LoadMeanImage(directory), limits ?? new ImageLimits());
        return new Backbone(id, network, ResNetFeatureExtractor.FeatureSize, preprocessor);
    }
}
