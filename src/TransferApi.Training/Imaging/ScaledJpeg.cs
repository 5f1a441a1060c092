using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SkiaSharp;

namespace TransferApi.Training.Imaging;

/// <summary>
/// Large JPEGs decoded straight to a fraction of their size by libjpeg-turbo (through SkiaSharp): it skips the DCT
/// coefficients a smaller image cannot show, so a 12-megapixel photo bound for a 224-pixel input costs a 1/8-size
/// decode instead of a full one and a big resize.
/// </summary>
internal static class ScaledJpeg
{
    // libjpeg-turbo's dedicated reduced-size IDCTs, smallest first. Only halvings, and only down to twice the size the
    // resize needs: at exactly that size one borderline validation photo changed its answer in float32, at twice
    // that none did (docs/benchmarks.md). Smaller photos keep ImageSharp's full decode and pixels.
    private static readonly int[] Denominators = [8, 4, 2];

    /// <summary>
    /// The JPEG at the smallest of 1/8, 1/4 or 1/2 size whose shorter side is still at least twice
    /// <paramref name="minShorterSide"/>, as stored (EXIF orientation not applied); null when no reduction keeps that
    /// size, or when libjpeg-turbo cannot decode it all (the full decoder then decides what the file is).
    /// </summary>
    public static Image<Rgb24>? TryDecode(byte[] jpeg, int width, int height, int minShorterSide)
    {
        // libjpeg rounds a scaled side up, so the floor here never promises more than it gives.
        var denominator = Denominators.FirstOrDefault(d => Math.Min(width, height) / d >= 2 * minShorterSide);
        if (denominator == 0)
            return null;
        using var data = SKData.CreateCopy(jpeg);
        using var codec = SKCodec.Create(data);
        if (codec is null || codec.EncodedFormat != SKEncodedImageFormat.Jpeg)
            return null;
        var size = codec.GetScaledDimensions(1f / denominator);
        if (Math.Min(size.Width, size.Height) < 2 * minShorterSide)
            return null;
        // No colour space: pixels as encoded, as ImageSharp reads them (neither applies ICC profiles).
        var info = new SKImageInfo(size.Width, size.Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        if (codec.GetPixels(info, out var rgba) != SKCodecResult.Success)
            return null;
        using var decoded = Image.LoadPixelData<Rgba32>(ImageReader.OneThreadPerImage, rgba, size.Width, size.Height);
        return decoded.CloneAs<Rgb24>(ImageReader.OneThreadPerImage);
    }
}
