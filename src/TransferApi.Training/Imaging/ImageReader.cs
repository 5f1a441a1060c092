using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace TransferApi.Training.Imaging;

/// <summary>Limits applied before an untrusted image is decoded (decompression bombs hide in the header).</summary>
public sealed record ImageLimits
{
    public long MaxPixels { get; init; } = 40_000_000;
    public int MaxSide { get; init; } = 16_384;
}

public sealed record ImageHeader(string Format, int Width, int Height);

/// <summary>An image the service refuses; <see cref="ExceedsLimits"/> separates hostile sizes from mere junk.</summary>
public sealed class ImageRejectedException(string reason, bool exceedsLimits = false, Exception? inner = null)
    : Exception(reason, inner)
{
    public bool ExceedsLimits { get; } = exceedsLimits;
}

/// <summary>The one place untrusted image bytes are read: header and limits first, then a full decode.</summary>
public static class ImageReader
{
    /// <summary>
    /// What decoded images are processed with: one thread per image. Callers already decode images in parallel (a
    /// batch, concurrent requests); ImageSharp's own row parallelism on top oversubscribed the cores and ran on the
    /// thread pool, outside a job's lowered priority (docs/benchmarks.md).
    /// </summary>
    internal static Configuration OneThreadPerImage { get; } = SingleThreaded();

    private static Configuration SingleThreaded()
    {
        var configuration = Configuration.Default.Clone();
        configuration.MaxDegreeOfParallelism = 1;
        return configuration;
    }

    /// <summary>Formats accepted from clients (ImageSharp's names); others are refused before decoding.</summary>
    public static IReadOnlySet<string> AcceptedFormats { get; } =
        new HashSet<string>(StringComparer.OrdinalIgnoreCase) { "JPEG", "PNG", "BMP", "GIF", "WEBP" };

    /// <summary>Checks limits, decodes every pixel, and answers the header with the size after EXIF orientation,
    /// and a large photo's <see cref="WorkingCopy"/> made from that same decode.</summary>
    public static (ImageHeader Header, byte[]? WorkingCopy) Validate(byte[] bytes, ImageLimits limits)
    {
        var header = ReadHeader(bytes, limits);
        using var image = Decode(bytes, limits);
        header = header with { Width = image.Width, Height = image.Height };
        return (header, WorkingCopy.Make(image));
    }

    public static ImageHeader ReadHeader(byte[] bytes, ImageLimits limits) => Identify(bytes, limits).Header;

    private static (ImageHeader Header, IImageInfo Info) Identify(byte[] bytes, ImageLimits limits)
    {
        IImageInfo? info;
        IImageFormat? format;
        try
        {
            info = Image.Identify(bytes, out format);
        }
        catch (Exception e)
            when (e
                    is ImageFormatException
                        or InvalidDataException
                        or NotSupportedException
                        or ArgumentException
                        or IndexOutOfRangeException
            )
        {
            throw new ImageRejectedException($"not a readable image ({e.Message})", inner: e);
        }
        if (info is null || format is null)
            throw new ImageRejectedException("not an image in a supported format (JPEG, PNG, BMP, GIF, WebP)");
        if (!AcceptedFormats.Contains(format.Name))
            throw new ImageRejectedException($"{format.Name} images are not accepted (JPEG, PNG, BMP, GIF, WebP)");
        if (info.Width <= 0 || info.Height <= 0)
            throw new ImageRejectedException("image has no pixels");
        if (
            info.Width > limits.MaxSide
            || info.Height > limits.MaxSide
            || (long)info.Width * info.Height > limits.MaxPixels
        )
            throw new ImageRejectedException(
                $"image is {info.Width}x{info.Height} pixels; the limit is {limits.MaxPixels:N0} pixels and "
                    + $"{limits.MaxSide} per side",
                exceedsLimits: true
            );
        return (new ImageHeader(format.Name, info.Width, info.Height), info);
    }

    /// <summary>
    /// Checks the header against the limits, then decodes and applies EXIF orientation. With
    /// <paramref name="minShorterSide"/>, a large JPEG may come out smaller (1/2, 1/4 or 1/8 of its size, see
    /// <see cref="ScaledJpeg"/>) but never with its shorter side under twice that; other images come out whole.
    /// </summary>
    public static Image<Rgb24> Decode(byte[] bytes, ImageLimits limits, int minShorterSide = 0)
    {
        var (header, info) = Identify(bytes, limits);
        try
        {
            var image =
                header.Format == "JPEG" && minShorterSide > 0
                    ? ScaledJpeg.TryDecode(bytes, header.Width, header.Height, minShorterSide)
                    : null;
            if (image is not null)
                image.Metadata.ExifProfile = info.Metadata.ExifProfile?.DeepClone();
            image ??= Image.Load<Rgb24>(OneThreadPerImage, bytes);
            image.Mutate(x => x.AutoOrient());
            return image;
        }
        catch (Exception e)
            when (e
                    is ImageFormatException
                        or InvalidDataException
                        or NotSupportedException
                        or ArgumentException
                        or IndexOutOfRangeException
            )
        {
            throw new ImageRejectedException($"image data is corrupt ({e.Message})", inner: e);
        }
    }
}
