using TransferApi.Persistence;
using TransferApi.Training.Backbones;
using TransferApi.Training.Imaging;

namespace TransferApi.Features.Backbones;

/// <param name="Id">What a training job's `backbone` names.</param>
/// <param name="Architecture">The network definition (TorchVision's name).</param>
/// <param name="Description">The architecture in words: blocks, feature size, stages.</param>
/// <param name="InputSize">Side of the square image the network takes, in pixels.</param>
/// <param name="FeatureSize">Length of the feature vector a head trains on.</param>
/// <param name="Stages">Stages `unfreezeStages` can fine-tune (the last N).</param>
/// <param name="Preprocessing">What every image goes through before the network, at training, /predict and in
/// exports.</param>
/// <param name="ParameterCount">Parameters of the network without its ImageNet classifier.</param>
/// <param name="Source">Where the weights came from.</param>
/// <param name="WeightsSha256">
/// SHA-256 of the stored weights (float32, TorchSharp format); backbones with equal weights share them. Null for
/// built-in ones.
/// </param>
/// <param name="Default">Whether jobs without a `backbone` use it.</param>
/// <param name="CreatedAt">When it was registered (UTC); null for built-in ones.</param>
public sealed record BackboneResponse(
    string Id,
    string Architecture,
    string Description,
    int InputSize,
    int FeatureSize,
    int Stages,
    PreprocessingResponse Preprocessing,
    long ParameterCount,
    string Source,
    string? WeightsSha256,
    bool Default,
    DateTime? CreatedAt
);

/// <summary>How an image becomes the network's input.</summary>
/// <param name="InputSize">Side of the square crop the network takes, in pixels.</param>
/// <param name="Resize">aspect-preserving-centre-crop, or resize-then-centre-crop (shorter side to resizeTo
/// first).</param>
/// <param name="ChannelOrder">RGB or BGR.</param>
/// <param name="Mean">per-channel (channelMean and channelStd) or per-pixel-mean-image (the CNTK ResNet's).</param>
/// <param name="Scale">Pixels 0..255 are multiplied by this first (1/255 reads them as 0..1).</param>
/// <param name="ResizeTo">resize-then-centre-crop: the shorter side before the crop.</param>
/// <param name="ChannelMean">per-channel: the mean subtracted from each channel, in R, G, B order.</param>
/// <param name="ChannelStd">per-channel: the standard deviation each channel is divided by, in R, G, B order.</param>
public sealed record PreprocessingResponse(
    int InputSize,
    string Resize,
    string ChannelOrder,
    string Mean,
    float Scale,
    int? ResizeTo,
    float[]? ChannelMean,
    float[]? ChannelStd
);

/// <summary>Overrides of the architecture's default preprocessing; omitted fields keep the default.</summary>
/// <param name="InputSize">Side of the square crop the network takes, 32-1024 pixels.</param>
/// <param name="ResizeTo">The shorter side before the crop (default inputSize x 256 / 224).</param>
/// <param name="ChannelOrder">RGB or BGR.</param>
/// <param name="Mean">Per-channel mean in R, G, B order, on the scaled pixels (0..1 with the default scale).</param>
/// <param name="Std">Per-channel standard deviation in R, G, B order.</param>
/// <param name="Scale">Pixels 0..255 are multiplied by this first.</param>
public sealed record PreprocessingRequest(
    int? InputSize,
    int? ResizeTo,
    string? ChannelOrder,
    float[]? Mean,
    float[]? Std,
    float? Scale
);

public static class BackboneMapping
{
    private const string BuiltInSource =
        "built in: the ImageNet ResNet18 of the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18 0.23.1 (ONNX)";

    public static BackboneResponse ToResponse(this Backbone backbone) =>
        new(
            backbone.Id,
            backbone.Architecture.Name,
            backbone.Architecture.Description,
            backbone.Preprocessor.Spec.InputSize,
            backbone.FeatureSize,
            backbone.Stages,
            backbone.Preprocessor.Spec.ToResponse(),
            backbone.ParameterCount,
            BuiltInSource,
            null,
            backbone.Id == BackboneCatalog.ResNet18ImageNet,
            null
        );

    public static BackboneResponse ToResponse(this RegisteredBackbone row)
    {
        var architecture = BackboneArchitecture.Find(row.Architecture)!;
        return new BackboneResponse(
            row.Id,
            architecture.Name,
            architecture.Description,
            row.Preprocessing.InputSize,
            architecture.FeatureSize,
            architecture.Stages,
            row.Preprocessing.ToResponse(),
            row.ParameterCount,
            row.Source,
            Convert.ToHexStringLower(row.WeightsSha256),
            false,
            row.CreatedAt
        );
    }

    public static PreprocessingResponse ToResponse(this PreprocessingSpec spec) =>
        new(
            spec.InputSize,
            spec.Resize,
            spec.ChannelOrder,
            spec.Mean,
            spec.Scale,
            spec.ResizeTo,
            spec.ChannelMean,
            spec.ChannelStd
        );

    /// <summary>The architecture's defaults with the request's overrides.</summary>
    public static PreprocessingSpec Over(this PreprocessingRequest request, PreprocessingSpec defaults) =>
        defaults with
        {
            InputSize = request.InputSize ?? defaults.InputSize,
            ResizeTo = request.ResizeTo
                ?? (request.InputSize is { } size ? (int)Math.Round(size * 256.0 / 224) : defaults.ResizeTo),
            ChannelOrder = request.ChannelOrder?.ToUpperInvariant() ?? defaults.ChannelOrder,
            ChannelMean = request.Mean ?? defaults.ChannelMean,
            ChannelStd = request.Std ?? defaults.ChannelStd,
            Scale = request.Scale ?? defaults.Scale,
        };
}
