using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace TransferApi.TestSupport;

/// <summary>Phone-camera-sized images made from the shared photos inside the tests (nothing binary is
/// committed).</summary>
public static class PhonePhotos
{
    /// <summary>
    /// A shared photo enlarged to a phone camera's size (12 megapixels by default, bicubic) and encoded as a JPEG of
    /// quality 90, optionally stored rotated with the EXIF orientation that turns it upright again (6: the camera
    /// was held upright, so the stored pixels lie on their side). Or <paramref name="png"/>: the same pixels
    /// losslessly.
    /// </summary>
    public static byte[] Make(
        byte[] photo,
        int width = 4032,
        int height = 3024,
        bool storedSideways = false,
        bool png = false
    )
    {
        using var image = Image.Load<Rgb24>(photo);
        image.Mutate(x => x.Resize(width, height, KnownResamplers.Bicubic));
        if (storedSideways)
        {
            image.Mutate(x => x.Rotate(RotateMode.Rotate270));
            image.Metadata.ExifProfile = new ExifProfile();
            image.Metadata.ExifProfile.SetValue(ExifTag.Orientation, (ushort)6);
        }
        using var buffer = new MemoryStream();
        if (png)
            image.SaveAsPng(buffer);
        else
            image.SaveAsJpeg(buffer, new JpegEncoder { Quality = 90 });
        return buffer.ToArray();
    }
}
