using System.IO.Compression;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace TransferApi.TestSupport;

/// <summary>Builds zip uploads and images inside the tests (nothing binary is committed).</summary>
public static class Archives
{
    public static byte[] Zip(
        IEnumerable<(string Entry, byte[] Data)> entries,
        CompressionLevel level = CompressionLevel.Fastest
    )
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, data) in entries)
            {
                using var stream = zip.CreateEntry(name, level).Open();
                stream.Write(data);
            }
        }
        return buffer.ToArray();
    }

    /// <summary>A zip whose single entry carries Unix mode bits (e.g. 0xA1FF for a symbolic link).</summary>
    public static byte[] ZipWithUnixMode(
        IEnumerable<(string Entry, byte[] Data)> entries,
        string linkName,
        int unixMode
    )
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, data) in entries)
            {
                using var stream = zip.CreateEntry(name, CompressionLevel.Fastest).Open();
                stream.Write(data);
            }
            var link = zip.CreateEntry(linkName);
            link.ExternalAttributes = unixMode << 16;
            using var target = link.Open();
            target.Write("/etc/passwd"u8);
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

    /// <summary>An image of random pixels (incompressible), encoded as PNG.</summary>
    public static byte[] NoisePng(int width, int height, int seed)
    {
        var random = new Random(seed);
        var pixels = new byte[width * height * 3];
        random.NextBytes(pixels);
        using var image = Image.LoadPixelData<Rgb24>(pixels, width, height);
        using var buffer = new MemoryStream();
        image.SaveAsPng(buffer);
        return buffer.ToArray();
    }

    public static (string, byte[]) Photo(string split, string label, int index, string? entry = null) =>
        (entry ?? $"{label}/{index}.jpg", File.ReadAllBytes(TestData.AntsBeesImages(split, label, index + 1)[index]));

    /// <summary>Real photos, <paramref name="perClass"/> ants and as many bees, one folder per class.</summary>
    public static List<(string, byte[])> TwoClasses(int perClass = 2) =>
        Enumerable
            .Range(0, perClass)
            .SelectMany(i => new[] { Photo("train", "ants", i), Photo("train", "bees", i) })
            .ToList();

    public static MultipartFormDataContent DatasetForm(
        string name,
        byte[] zip,
        string fileName = "dataset.zip",
        params (string Field, string Value)[] fields
    ) => ZipForm(zip, fileName, [("name", name), .. fields]);

    /// <summary>A form with a zip as its <c>file</c> part, and other fields.</summary>
    public static MultipartFormDataContent ZipForm(
        byte[] zip,
        string fileName = "images.zip",
        params (string Field, string Value)[] fields
    )
    {
        var file = new ByteArrayContent(zip);
        file.Headers.ContentType = new("application/zip");
        var form = new MultipartFormDataContent { { file, "file", fileName } };
        foreach (var (field, value) in fields)
            form.Add(new StringContent(value), field);
        return form;
    }

    public static MultipartFormDataContent ImageForm(byte[] image, string fileName = "image.jpg")
    {
        var file = new ByteArrayContent(image);
        file.Headers.ContentType = new("image/jpeg");
        return new MultipartFormDataContent { { file, "file", fileName } };
    }

    public static MultipartFormDataContent ImagesForm(
        string label,
        IEnumerable<(string FileName, byte[] Data)> images,
        string? split = null
    )
    {
        var form = new MultipartFormDataContent { { new StringContent(label), "label" } };
        if (split is not null)
            form.Add(new StringContent(split), "split");
        foreach (var (name, data) in images)
        {
            var file = new ByteArrayContent(data);
            file.Headers.ContentType = new("application/octet-stream");
            form.Add(file, "file", name);
        }
        return form;
    }
}
