using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using static TorchSharp.torch;

namespace TransferApi.Training.Imaging;

/// <summary>
/// What a backbone expects of its input; stored with every model so prediction repeats training exactly.
/// </summary>
public sealed record PreprocessingSpec(int InputSize, string Resize, string ChannelOrder, string Mean, float Scale)
{
    /// <summary>ML.NET's ResNet preprocessing: centre crop, planar 0..255, BGR, minus a per-pixel mean image.</summary>
    public static PreprocessingSpec CntkResNet { get; } = new(224, "aspect-preserving-centre-crop", "BGR", "per-pixel-mean-image", 1f);
}

/// <summary>Turns encoded images into the backbone's input tensor. Training, evaluation and /predict all use it.</summary>
public sealed class ImagePreprocessor : IDisposable
{
    private readonly Tensor meanImage;

    public PreprocessingSpec Spec { get; }
    public ImageLimits Limits { get; }

    /// <summary>The per-pixel mean [1,3,S,S] subtracted from the pixels (exports put it inside the network).</summary>
    public Tensor MeanImage => meanImage;

    /// <param name="meanImage">[3,S,S] values subtracted per pixel, in the spec's channel order.</param>
    public ImagePreprocessor(PreprocessingSpec spec, Tensor meanImage, ImageLimits limits)
    {
        if (spec.ChannelOrder is not ("BGR" or "RGB")) throw new ArgumentException($"Unknown channel order {spec.ChannelOrder}.", nameof(spec));
        Spec = spec;
        Limits = limits;
        this.meanImage = meanImage.reshape(1, 3, spec.InputSize, spec.InputSize).detach();
    }

    /// <summary>Decodes and preprocesses a batch (in parallel) into a [N,3,S,S] float tensor.</summary>
    /// <param name="transforms">Per image, an augmentation applied after decoding, or null for the image as it is.</param>
    public Tensor ToTensor(IReadOnlyList<byte[]> images, IReadOnlyList<ViewTransform?>? transforms = null) =>
        FromPlanar(DecodePlanar(images, transforms), images.Count);

    /// <summary>
    /// The managed half of <see cref="ToTensor"/>: decoded, cropped planar pixels of every image, back to back.
    /// No libtorch call, so any thread can do it (a thread that calls libtorch gets its own OpenMP threads).
    /// </summary>
    public float[] DecodePlanar(IReadOnlyList<byte[]> images, IReadOnlyList<ViewTransform?>? transforms = null)
    {
        var size = Spec.InputSize;
        var plane = size * size;
        var pixels = new float[images.Count * 3 * plane];
        try
        {
            Parallel.For(0, images.Count, i => WritePlanar(images[i], transforms?[i], pixels.AsSpan(i * 3 * plane, 3 * plane)));
        }
        catch (AggregateException e) when (e.InnerExceptions.OfType<ImageRejectedException>().FirstOrDefault() is { } rejected)
        {
            // The caller's contract is "throws ImageRejectedException for a bad image", parallel or not.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(rejected);
        }
        return pixels;
    }

    /// <summary>The network's input [N,3,S,S] from <see cref="DecodePlanar"/>'s pixels of <paramref name="count"/> images.</summary>
    public Tensor FromPlanar(float[] planar, int count)
    {
        var size = Spec.InputSize;
        using var raw = tensor(planar, [count, 3, size, size]);
        return raw.sub(meanImage);
    }

    private void WritePlanar(byte[] encoded, ViewTransform? transform, Span<float> destination)
    {
        var size = Spec.InputSize;
        using var image = ImageReader.Decode(encoded, Limits);
        transform?.Apply(image);
        image.Mutate(x => x.Resize(new ResizeOptions
        {
            Size = new SixLabors.ImageSharp.Size(size, size),
            Mode = ResizeMode.Crop,
            Position = AnchorPositionMode.Center,
            Sampler = KnownResamplers.Bicubic,
        }));
        var rgb = new Rgb24[size * size];
        image.CopyPixelDataTo(rgb);
        var plane = size * size;
        var (first, third) = Spec.ChannelOrder == "BGR" ? (2, 0) : (0, 2);
        for (var p = 0; p < plane; p++)
        {
            var px = rgb[p];
            destination[first * plane + p] = px.R * Spec.Scale;
            destination[plane + p] = px.G * Spec.Scale;
            destination[third * plane + p] = px.B * Spec.Scale;
        }
    }

    public void Dispose() => meanImage.Dispose();
}
