using System.IO.Compression;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace TransferApi.Tests;

/// <summary>Builds zip uploads and images inside the tests (nothing binary is committed).</summary>
public static class Archives
{
    public static byte[] Zip(IEnumerable<(string Entry, byte[] Data)> entries)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, data) in entries)
            {
                using var stream = zip.CreateEntry(name, CompressionLevel.Fastest).Open();
                stream.Write(data);
            }
        }
        return buffer.ToArray();
    }

    public static byte[] Png(int width, int height, Rgb24 colour)
    {
        using var image = new Image<Rgb24>(width, height, colour);
        using var buffer = new MemoryStream();
        image.SaveAsPng(buffer);
        return buffer.ToArray();
    }

    public static MultipartFormDataContent DatasetForm(string name, byte[] zip, string fileName = "dataset.zip")
    {
        var file = new ByteArrayContent(zip);
        file.Headers.ContentType = new("application/zip");
        return new MultipartFormDataContent { { new StringContent(name), "name" }, { file, "file", fileName } };
    }

    public static MultipartFormDataContent ImageForm(byte[] image, string fileName = "image.jpg")
    {
        var file = new ByteArrayContent(image);
        file.Headers.ContentType = new("image/jpeg");
        return new MultipartFormDataContent { { file, "file", fileName } };
    }
}
