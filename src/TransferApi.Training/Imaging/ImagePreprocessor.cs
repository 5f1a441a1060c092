using System.Buffers;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using static TorchSharp.torch;

namespace TransferApi.Training.Imaging;

/// <summary>
/// What a backbone expects of its input; stored with every model so prediction (and exports) repeat training
/// exactly. Pixels are read 0..255 in <see cref="ChannelOrder"/>, multiplied by <see cref="Scale"/>, then either a
/// per-pixel mean image is subtracted (<see cref="Mean"/> = per-pixel-mean-image) or each channel is normalized
/// with <see cref="ChannelMean"/> and <see cref="ChannelStd"/> (given in RGB order, TorchVision's convention).
/// </summary>
/// <param name="Resize">aspect-preserving-centre-crop: bicubic, shorter side to InputSize, centre crop.
/// resize-then-centre-crop: bilinear, shorter side to <paramref name="ResizeTo"/>, centre crop to InputSize
/// (TorchVision's eval transform).</param>
public sealed record PreprocessingSpec(
    int InputSize,
    string Resize,
    string ChannelOrder,
    string Mean,
    float Scale,
    int? ResizeTo = null,
    float[]? ChannelMean = null,
    float[]? ChannelStd = null
)
{
    public const string CropToInput = "aspect-preserving-centre-crop";
    public const string ResizeThenCrop = "resize-then-centre-crop";
    public const string PerPixelMean = "per-pixel-mean-image";
    public const string PerChannel = "per-channel";

    /// <summary>ML.NET's ResNet preprocessing: centre crop, planar 0..255, BGR, minus a per-pixel mean image.</summary>
    public static PreprocessingSpec CntkResNet { get; } = new(224, CropToInput, "BGR", PerPixelMean, 1f);

    /// <summary>TorchVision's ImageNet evaluation transform: resize, centre crop, RGB 0..1, ImageNet mean and
    /// std.</summary>
    public static PreprocessingSpec TorchVision(
        int inputSize = 224,
        int resizeTo = 256,
        float[]? mean = null,
        float[]? std = null
    ) =>
        new(
            inputSize,
            ResizeThenCrop,
            "RGB",
            PerChannel,
            1f / 255,
            resizeTo,
            mean ?? [0.485f, 0.456f, 0.406f],
            std ?? [0.229f, 0.224f, 0.225f]
        );

    /// <summary>Every problem of a spec someone supplied, as (field, message).</summary>
    public IReadOnlyList<(string Field, string Message)> Problems()
    {
        var problems = new List<(string, string)>();
        void Check(bool ok, string field, string message)
        {
            if (!ok)
                problems.Add((field, message));
        }
        Check(InputSize is >= 32 and <= 1024, "preprocessing.inputSize", "inputSize must be between 32 and 1024.");
        Check(ChannelOrder is "RGB" or "BGR", "preprocessing.channelOrder", "channelOrder must be RGB or BGR.");
        Check(
            float.IsFinite(Scale) && Scale > 0,
            "preprocessing.scale",
            "scale must be a positive number (1/255 reads pixels as 0..1)."
        );
        if (Mean == PerChannel)
        {
            Check(Resize == ResizeThenCrop, "preprocessing.resize", $"resize must be {ResizeThenCrop}.");
            Check(
                ResizeTo is { } r && r >= InputSize && r <= 2048,
                "preprocessing.resizeTo",
                "resizeTo must be at least inputSize and at most 2048."
            );
            Check(
                ChannelMean is { Length: 3 } m && m.All(float.IsFinite),
                "preprocessing.mean",
                "mean must be three numbers (R, G, B)."
            );
            Check(
                ChannelStd is { Length: 3 } s && s.All(v => float.IsFinite(v) && v > 0),
                "preprocessing.std",
                "std must be three positive numbers (R, G, B)."
            );
        }
        else
        {
            Check(false, "preprocessing.mean", "Only per-channel mean and std can be supplied.");
        }
        return problems;
    }

    // Arrays compare by content: a model's spec must equal its backbone's.
    public bool Equals(PreprocessingSpec? other) =>
        other is not null
        && InputSize == other.InputSize
        && Resize == other.Resize
        && ChannelOrder == other.ChannelOrder
        && Mean == other.Mean
        && Scale.Equals(other.Scale)
        && ResizeTo == other.ResizeTo
        && Same(ChannelMean, other.ChannelMean)
        && Same(ChannelStd, other.ChannelStd);

    public override int GetHashCode() => HashCode.Combine(InputSize, Resize, ChannelOrder, Mean, Scale, ResizeTo);

    private static bool Same(float[]? a, float[]? b) => a is null ? b is null : b is not null && a.SequenceEqual(b);
}

/// <summary>Turns encoded images into the backbone's input tensor. Training, evaluation and /predict all use
/// it.</summary>
public sealed class ImagePreprocessor
{
    // The network's input is (pixel 0..255 - offset) * multiplier, per channel in the spec's order; the offset is
    // per pixel ([3,S,S]) for a mean image, else per channel. Exports put the same two inside the network.
    private readonly float[] offset;
    private readonly float[] multiplier;

    public PreprocessingSpec Spec { get; }
    public ImageLimits Limits { get; }

    /// <param name="meanImage">[3,S,S] values subtracted per pixel, in the spec's channel order (per-pixel-mean-image
    /// specs only).</param>
    public ImagePreprocessor(PreprocessingSpec spec, ImageLimits limits, float[]? meanImage = null)
    {
        if (spec.ChannelOrder is not ("BGR" or "RGB"))
            throw new ArgumentException($"Unknown channel order {spec.ChannelOrder}.", nameof(spec));
        Spec = spec;
        Limits = limits;
        if (spec.Mean == PreprocessingSpec.PerPixelMean)
        {
            if (meanImage?.Length != 3 * spec.InputSize * spec.InputSize)
                throw new ArgumentException("A per-pixel mean needs a [3,S,S] mean image.", nameof(meanImage));
            offset = meanImage.Select(m => m / spec.Scale).ToArray();
            multiplier = [spec.Scale, spec.Scale, spec.Scale];
        }
        else
        {
            if (spec.ChannelMean is not { Length: 3 } mean || spec.ChannelStd is not { Length: 3 } std)
                throw new ArgumentException("Per-channel normalization needs three means and stds.", nameof(spec));
            int[] order = spec.ChannelOrder == "RGB" ? [0, 1, 2] : [2, 1, 0];
            offset = order.Select(c => mean[c] / spec.Scale).ToArray();
            multiplier = order.Select(c => spec.Scale / std[c]).ToArray();
        }
    }

    /// <summary>What exports subtract from the 0..255 pixels inside the network: [1,3,S,S] (mean image) or
    /// [1,3,1,1].</summary>
    public Tensor InputOffset() =>
        offset.Length == 3 ? tensor(offset, [1, 3, 1, 1]) : tensor(offset, [1, 3, Spec.InputSize, Spec.InputSize]);

    /// <summary>What exports then multiply by, per channel: [1,3,1,1].</summary>
    public Tensor InputMultiplier() => tensor(multiplier, [1, 3, 1, 1]);

    /// <summary>Decodes and preprocesses a batch (in parallel) into a [N,3,S,S] float tensor.</summary>
    /// <param name="transforms">Per image, an augmentation applied after decoding, or null for the image as it
    /// is.</param>
    public Tensor ToTensor(IReadOnlyList<byte[]> images, IReadOnlyList<ViewTransform?>? transforms = null) =>
        FromPlanar(DecodePlanar(images, transforms), images.Count);

    /// <summary>
    /// The managed half of <see cref="ToTensor"/>: decoded, cropped, normalized planar pixels of every image, back
    /// to back. No libtorch call, so any thread can do it (a thread that calls libtorch gets its own OpenMP threads).
    /// </summary>
    /// <param name="normalized">False for the plain 0..255 pixels an exported model takes (it normalizes
    /// inside).</param>
    /// <param name="maxThreads">Images decoded at once; default: as many as the thread pool gives.</param>
    public float[] DecodePlanar(
        IReadOnlyList<byte[]> images,
        IReadOnlyList<ViewTransform?>? transforms = null,
        bool normalized = true,
        int maxThreads = -1
    )
    {
        var size = Spec.InputSize;
        var plane = size * size;
        var pixels = new float[images.Count * 3 * plane];
        try
        {
            Parallel.For(0, images.Count, new ParallelOptions { MaxDegreeOfParallelism = maxThreads }, i =>
                WritePlanar(images[i], transforms?[i], pixels.AsSpan(i * 3 * plane, 3 * plane), normalized)
            );
        }
        catch (AggregateException e)
            when (e.InnerExceptions.OfType<ImageRejectedException>().FirstOrDefault() is { } rejected)
        {
            // The caller's contract is "throws ImageRejectedException for a bad image", parallel or not.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(rejected);
        }
        return pixels;
    }

    /// <summary>The network's input [N,3,S,S] from <see cref="DecodePlanar"/>'s pixels of <paramref name="count"/>
    /// images.</summary>
    public Tensor FromPlanar(float[] planar, int count) => tensor(planar, [count, 3, Spec.InputSize, Spec.InputSize]);

    private void WritePlanar(byte[] encoded, ViewTransform? transform, Span<float> destination, bool normalized)
    {
        var size = Spec.InputSize;
        var resizedShorterSide = Spec.Resize == PreprocessingSpec.ResizeThenCrop ? Spec.ResizeTo ?? size : size;
        // An augmentation's crop is enlarged to that size afterwards: decode enough pixels for the crop.
        var cropFraction = transform is null ? 1 : Math.Min(transform.CropWidth, transform.CropHeight);
        using var image = ImageReader.Decode(encoded, Limits, (int)Math.Ceiling(resizedShorterSide / cropFraction));
        transform?.Apply(image);
        if (Spec.Resize == PreprocessingSpec.ResizeThenCrop)
        {
            // TorchVision: the shorter side to ResizeTo (the longer truncated), then a centre crop rounded as it
            // rounds.
            var resizeTo = Spec.ResizeTo ?? size;
            var (w, h) = (image.Width, image.Height);
            var (newW, newH) =
                w <= h
                    ? (resizeTo, Math.Max(1, (int)((long)resizeTo * h / w)))
                    : (Math.Max(1, (int)((long)resizeTo * w / h)), resizeTo);
            var (left, top) = (
                (int)Math.Round((newW - size) / 2.0, MidpointRounding.ToEven),
                (int)Math.Round((newH - size) / 2.0, MidpointRounding.ToEven)
            );
            // Resized straight into the crop: the same kernel weights as resizing whole and cropping, without
            // computing the pixels the crop drops (pixels differ by at most one level in float rounding).
            image.Mutate(x =>
                x.Resize(
                    new ResizeOptions
                    {
                        Size = new SixLabors.ImageSharp.Size(size, size),
                        Mode = ResizeMode.Manual,
                        TargetRectangle = new Rectangle(-left, -top, newW, newH),
                        Sampler = KnownResamplers.Triangle,
                    }
                )
            );
        }
        else
        {
            image.Mutate(x =>
                x.Resize(
                    new ResizeOptions
                    {
                        Size = new SixLabors.ImageSharp.Size(size, size),
                        Mode = ResizeMode.Crop,
                        Position = AnchorPositionMode.Center,
                        Sampler = KnownResamplers.Bicubic,
                    }
                )
            );
        }
        var plane = size * size;
        // Pooled: a 224x224 image's pixels would otherwise be a large-object allocation per image.
        var pooled = ArrayPool<Rgb24>.Shared.Rent(plane);
        try
        {
            image.CopyPixelDataTo(pooled.AsSpan(0, plane));
            WriteChannels(pooled.AsSpan(0, plane), destination, normalized);
        }
        finally
        {
            ArrayPool<Rgb24>.Shared.Return(pooled);
        }
    }

    private void WriteChannels(ReadOnlySpan<Rgb24> rgb, Span<float> destination, bool normalized)
    {
        var plane = rgb.Length;
        var (first, third) = Spec.ChannelOrder == "BGR" ? (2, 0) : (0, 2);
        var perPixel = offset.Length != 3;
        if (!normalized)
        {
            for (var p = 0; p < plane; p++)
                (destination[first * plane + p], destination[plane + p], destination[third * plane + p]) = (
                    rgb[p].R,
                    rgb[p].G,
                    rgb[p].B
                );
            return;
        }
        for (var p = 0; p < plane; p++)
        {
            var px = rgb[p];
            destination[first * plane + p] = (px.R - offset[perPixel ? first * plane + p : first]) * multiplier[first];
            destination[plane + p] = (px.G - offset[perPixel ? plane + p : 1]) * multiplier[1];
            destination[third * plane + p] = (px.B - offset[perPixel ? third * plane + p : third]) * multiplier[third];
        }
    }
}
