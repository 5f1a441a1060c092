using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Processing;
using TransferApi.Training.Imaging;

namespace TransferApi.Services;

/// <summary>Small JPEG copies of stored images, for browsing and contact sheets.</summary>
public static class Thumbnails
{
    /// <summary>Longest side of a thumbnail, in pixels.</summary>
    public const int Side = 128;

    /// <summary>The image (decoded within <paramref name="limits"/>) scaled to fit <see cref="Side"/> pixels, as
    /// JPEG.</summary>
    public static byte[] Jpeg(byte[] encoded, ImageLimits limits)
    {
        using var decoded = ImageReader.Decode(encoded, limits, minShorterSide: Side);
        decoded.Mutate(x => x.Resize(new ResizeOptions { Size = new Size(Side, Side), Mode = ResizeMode.Max }));
        using var buffer = new MemoryStream();
        decoded.SaveAsJpeg(buffer);
        return buffer.ToArray();
    }
}
