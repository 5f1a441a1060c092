using TorchSharp;
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

    // What inference runs: a copy with batch norms folded, channels-last, in float32 or bfloat16 (see
    // UsePrecision). The unfolded float32 network stays for fine-tuning tails and exports.
    private FeatureNetwork inference;
    private ScalarType inferenceType = ScalarType.Float32;

    public string Id { get; }
    public int FeatureSize => network.FeatureSize;
    public int Stages => network.StageCount;
    public BackboneArchitecture Architecture => network.Architecture;
    public ImagePreprocessor Preprocessor { get; }
    public long ParameterCount { get; }

    /// <summary>What the frozen forward passes run in; float32 unless <see cref="UsePrecision"/> chose
    /// otherwise.</summary>
    public PrecisionChoice Precision { get; private set; } = PrecisionChoice.Fp32("the default");

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
        inference = InferenceCopy();
    }

    private FeatureNetwork InferenceCopy()
    {
        var copy = network.Architecture.Create();
        copy.load_state_dict(network.state_dict());
        copy.FoldForInference();
        return copy;
    }

    /// <summary>
    /// Chooses what the frozen forward passes run in. Call it once, right after loading and before the backbone is
    /// shared. Auto runs a fixed probe batch both ways (alternating, a few seconds at most) and keeps bfloat16 only
    /// when <see cref="PrecisionChoice.Decide"/> says so; on a processor without bfloat16 instructions it keeps
    /// float32 without measuring.
    /// </summary>
    public PrecisionChoice UsePrecision(BackbonePrecision requested)
    {
        if (requested == BackbonePrecision.Fp32)
            return Precision = PrecisionChoice.Fp32("configured");
        if (requested == BackbonePrecision.Auto && !PrecisionChoice.ProcessorHasBf16())
            return Precision = PrecisionChoice.Fp32("the processor has no bfloat16 instructions");
        var bf16 = InferenceCopy();
        bf16.to(ScalarType.BFloat16);
        var choice =
            requested == BackbonePrecision.Bf16
                ? new PrecisionChoice(BackbonePrecision.Bf16, "configured")
                : Measure(bf16);
        if (choice.Chosen == BackbonePrecision.Bf16)
        {
            (inference, bf16) = (bf16, inference);
            inferenceType = ScalarType.BFloat16;
        }
        bf16.Dispose();
        return Precision = choice;
    }

    private PrecisionChoice Measure(FeatureNetwork bf16)
    {
        using var scope = NewDisposeScope();
        // The fixed probe batch: smooth random pixel fields (0..255 noise enlarged from 7x7), normalized as the
        // preprocessing does, so it exercises the network over its real input range.
        var generator = new Generator(20261203);
        var size = Preprocessor.Spec.InputSize;
        var pixels = nn.functional.interpolate(
            rand([8, 3, 7, 7], generator: generator) * 255,
            [size, size],
            mode: InterpolationMode.Bilinear,
            align_corners: false
        );
        var probe = (pixels - Preprocessor.InputOffset()) * Preprocessor.InputMultiplier();
        using var mode = inference_mode();
        double Rate(Func<Tensor> forward)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            forward().Dispose();
            return probe.shape[0] / clock.Elapsed.TotalSeconds;
        }
        Tensor Fp32() => inference.call(probe);
        Tensor Bf16() => bf16.call(probe.to(ScalarType.BFloat16)).to(ScalarType.Float32);
        var cosine = nn.functional.cosine_similarity(Fp32(), Bf16(), 1).min().item<float>();
        // Alternating rounds (after the warm-up above), medians: both see the same machine.
        var rounds = Enumerable.Range(0, 3).Select(_ => (Fp32: Rate(Fp32), Bf16: Rate(Bf16))).ToList();
        return PrecisionChoice.Decide(
            rounds.Select(r => r.Fp32).Order().ElementAt(1),
            rounds.Select(r => r.Bf16).Order().ElementAt(1),
            cosine
        );
    }

    /// <summary>Features [N, FeatureSize] of a preprocessed batch, as an ordinary tensor usable in autograd
    /// later.</summary>
    public Tensor Forward(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        Tensor features;
        using (inference_mode())
        {
            features = inference.call(pixels.to(inferenceType));
        }
        // Inference-mode tensors may not be saved for backward; a copy made outside inference mode is a normal tensor.
        return AsFloat32(features).MoveToOuterDisposeScope();
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
            activation = inference.Prefix(pixels.to(inferenceType), firstTrainableStage);
        }
        return AsFloat32(activation).MoveToOuterDisposeScope();
    }

    /// <summary>A float32 copy of an inference tensor, made outside inference mode (so a normal tensor).</summary>
    private static Tensor AsFloat32(Tensor result) =>
        result.dtype == ScalarType.Float32 ? result.clone() : result.to(ScalarType.Float32);

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
