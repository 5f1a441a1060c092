using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace TransferApi.Training.Imaging;

/// <summary>
/// A large stored photo's small stand-in for every later pass over it (health, feature passes, fine-tuning, views):
/// upright, shorter side <see cref="ShorterSide"/>, a quality-90 JPEG. Made once at upload from the decode that
/// validates the photo; decoding it costs a tenth of decoding the photo, even reduced (docs/benchmarks.md).
/// Predictions never use one: they decode what the client sends.
/// </summary>
public static class WorkingCopy
{
    /// <summary>Twice the 256 pixels TorchVision's transform resizes to: the margin that left every validation
    /// answer unchanged when decoding reduced (<see cref="ScaledJpeg"/>).</summary>
    public const int ShorterSide = 512;

    private static readonly JpegEncoder Encoder = new() { Quality = 90 };

    /// <summary>Photos whose shorter side is at least this get one: the copy holds at most a quarter of their
    /// pixels.</summary>
    public const int FromShorterSide = 2 * ShorterSide;

    /// <summary>True when a backbone that resizes to <paramref name="spec"/> finds in a working copy at least twice
    /// the pixels it resizes to.</summary>
    public static bool Serves(PreprocessingSpec spec) =>
        2 * (spec.Resize == PreprocessingSpec.ResizeThenCrop ? spec.ResizeTo ?? spec.InputSize : spec.InputSize)
        <= ShorterSide;

    /// <summary>The copy of an upright decoded photo, or null when it is too small to need one. Resizes
    /// <paramref name="upright"/> in place.</summary>
    internal static byte[]? Make(Image<Rgb24> upright)
    {
        var (width, height) = (upright.Width, upright.Height);
        if (Math.Min(width, height) < FromShorterSide)
            return null;
        var scale = (double)ShorterSide / Math.Min(width, height);
        upright.Mutate(x =>
            x.Resize(
                Math.Max(ShorterSide, (int)Math.Round(width * scale)),
                Math.Max(ShorterSide, (int)Math.Round(height * scale)),
                KnownResamplers.Bicubic
            )
        );
        using var buffer = new MemoryStream();
        upright.SaveAsJpeg(buffer, Encoder);
        return buffer.ToArray();
    }
}
