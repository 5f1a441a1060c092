using System.IO.Compression;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using Microsoft.EntityFrameworkCore;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace TransferApi.Tests;

/// <summary>
/// A corpus of malformed and hostile uploads. Each is refused with its status, a problem naming what is wrong,
/// and not one row left behind (ingestion writes in batches of 2 here, so a rollback really has work to undo).
/// </summary>
[Collection(ServiceCollection.Name)]
public class HostileUploadTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    private static List<(string, byte[])> Good() => Archives.TwoClasses(3);

    private static byte[] Random(int bytes, int seed)
    {
        var data = new byte[bytes];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static byte[] Tiff()
    {
        using var image = new Image<Rgb24>(8, 8);
        using var buffer = new MemoryStream();
        image.SaveAsTiff(buffer);
        return buffer.ToArray();
    }

    /// <summary>A valid zip whose entry "bees/last.jpg" claims compression method 14 (LZMA), which no reader here
    /// supports.</summary>
    private static byte[] UnsupportedCompression()
    {
        var zip = Archives.Zip([.. Good(), Archives.Photo("train", "bees", 5, "bees/last.jpg")]);
        var name = "bees/last.jpg"u8.ToArray();
        for (var i = 0; i < zip.Length - 50; i++)
        {
            var local = zip.AsSpan(i).StartsWith("PK\u0003\u0004"u8) && zip.AsSpan(i + 30).StartsWith(name);
            var central = zip.AsSpan(i).StartsWith("PK\u0001\u0002"u8) && zip.AsSpan(i + 46).StartsWith(name);
            if (local)
                zip[i + 8] = 14;
            if (central)
                zip[i + 10] = 14;
        }
        return zip;
    }

    private static readonly Dictionary<string, Func<byte[]>> Uploads = new()
    {
        ["text instead of a zip"] = () => Encoding.UTF8.GetBytes("this is not a zip archive at all, just some text"),
        ["three bytes"] = () => [1, 2, 3],
        ["empty file"] = () => [],
        ["truncated zip"] = () => Archives.Zip(Good())[..^200],
        ["unsupported compression method"] = UnsupportedCompression,
        ["path traversal"] = () => Archives.Zip([.. Good(), ("../../etc/evil.jpg", [1, 2, 3])]),
        ["traversal inside a class folder"] = () => Archives.Zip([.. Good(), ("ants/../../evil.jpg", [1, 2, 3])]),
        ["backslash traversal"] = () => Archives.Zip([.. Good(), ("..\\..\\evil.jpg", [1, 2, 3])]),
        ["absolute path"] = () => Archives.Zip([.. Good(), ("/tmp/evil.jpg", [1, 2, 3])]),
        ["drive letter"] = () => Archives.Zip([.. Good(), ("C:/evil.jpg", [1, 2, 3])]),
        ["control character in a name"] = () => Archives.Zip([.. Good(), ("ants/ev\u0001il.jpg", [1, 2, 3])]),
        ["path over 1024 characters"] = () =>
            Archives.Zip([.. Good(), ($"ants/{string.Join('/', "abcdefg".Select(c => new string(c, 150)))}.jpg", [1])]),
        ["class folder name over 200 characters"] = () =>
            Archives.Zip([.. Good(), ($"{new string('x', 201)}/a.jpg", [1])]),
        ["symbolic link"] = () => Archives.ZipWithUnixMode(Good(), "ants/link.jpg", 0xA1FF),
        ["nested zip"] = () => Archives.Zip([.. Good(), ("ants/more.zip", Archives.Zip(Good()))]),
        ["zip disguised as a jpg"] = () => Archives.Zip([.. Good(), ("ants/photo.jpg", Archives.Zip(Good()))]),
        ["gzip disguised as a jpg"] = () =>
            Archives.Zip([.. Good(), ("bees/photo.jpg", [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3])]),
        ["too many entries"] = () =>
            Archives.Zip(
                Good()
                    .Concat(
                        Enumerable
                            .Range(0, TransferApiFactory.MaxEntries)
                            .Select(i => ($"ants/{i}.txt", new byte[] { 1 }))
                    )
            ),
        ["zip bomb by compression ratio"] = () =>
            Archives.Zip([.. Good(), ("bees/bomb.bmp", new byte[3 * 1024 * 1024])], CompressionLevel.SmallestSize),
        ["entry over the size limit"] = () =>
            Archives.Zip(
                [.. Good(), ("bees/big.jpg", Random((int)TransferApiFactory.MaxEntryBytes + 1, 3))],
                CompressionLevel.NoCompression
            ),
        ["archive over the total size limit"] = () =>
            Archives.Zip(
                Good().Concat(Enumerable.Range(0, 9).Select(i => ($"bees/big{i}.bin", Random(3_900_000, i)))),
                CompressionLevel.NoCompression
            ),
        ["image over the pixel limit"] = () =>
            Archives.Zip([.. Good(), ("bees/huge.png", Archives.Png(2500, 2500, new Rgb24(200, 10, 10)))]),
        ["one class"] = () => Archives.Zip([Archives.Photo("train", "ants", 0), Archives.Photo("train", "ants", 1)]),
        ["only junk"] = () =>
            Archives.Zip([("__MACOSX/ants/._a.jpg", [1]), ("ants/.DS_Store", [1]), ("bees/Thumbs.db", [1])]),
        ["no images at all"] = () => Archives.Zip([("ants/a.txt", [1]), ("bees/b.txt", [2])]),
        ["files but no class folders"] = () =>
            Archives.Zip([
                ("a.jpg", Archives.Photo("train", "ants", 0).Item2),
                ("b.jpg", Archives.Photo("train", "bees", 0).Item2),
            ]),
        ["a format that is not accepted"] = () => Archives.Zip([("ants/a.tiff", Tiff()), ("bees/b.tiff", Tiff())]),
    };

    public static TheoryData<string, HttpStatusCode, string> Cases =>
        new()
        {
            { "text instead of a zip", HttpStatusCode.BadRequest, "zip" },
            { "three bytes", HttpStatusCode.BadRequest, "zip" },
            { "empty file", HttpStatusCode.BadRequest, "zip" },
            { "truncated zip", HttpStatusCode.BadRequest, "zip" },
            { "unsupported compression method", HttpStatusCode.BadRequest, "bees/last.jpg" },
            { "path traversal", HttpStatusCode.BadRequest, "../../etc/evil.jpg" },
            { "traversal inside a class folder", HttpStatusCode.BadRequest, "ants/../../evil.jpg" },
            { "backslash traversal", HttpStatusCode.BadRequest, "evil.jpg" },
            { "absolute path", HttpStatusCode.BadRequest, "/tmp/evil.jpg" },
            { "drive letter", HttpStatusCode.BadRequest, "C:/evil.jpg" },
            { "control character in a name", HttpStatusCode.BadRequest, "control" },
            { "path over 1024 characters", HttpStatusCode.BadRequest, "1024" },
            { "class folder name over 200 characters", HttpStatusCode.BadRequest, "200" },
            { "symbolic link", HttpStatusCode.BadRequest, "symbolic link" },
            { "nested zip", HttpStatusCode.BadRequest, "ants/more.zip" },
            { "zip disguised as a jpg", HttpStatusCode.BadRequest, "ants/photo.jpg" },
            { "gzip disguised as a jpg", HttpStatusCode.BadRequest, "bees/photo.jpg" },
            { "too many entries", HttpStatusCode.RequestEntityTooLarge, "entries" },
            { "zip bomb by compression ratio", HttpStatusCode.RequestEntityTooLarge, "bees/bomb.bmp" },
            { "entry over the size limit", HttpStatusCode.RequestEntityTooLarge, "bees/big.jpg" },
            { "archive over the total size limit", HttpStatusCode.RequestEntityTooLarge, "expands to more than" },
            { "image over the pixel limit", HttpStatusCode.RequestEntityTooLarge, "bees/huge.png" },
            { "one class", HttpStatusCode.UnprocessableEntity, "at least 2 classes" },
            { "only junk", HttpStatusCode.UnprocessableEntity, "at least 2 classes" },
            { "no images at all", HttpStatusCode.UnprocessableEntity, "ants/a.txt" },
            { "files but no class folders", HttpStatusCode.UnprocessableEntity, "class folder" },
            { "a format that is not accepted", HttpStatusCode.UnprocessableEntity, "TIFF" },
        };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Hostile_or_malformed_upload_is_refused_and_stores_nothing(
        string upload,
        HttpStatusCode expected,
        string detailMentions
    )
    {
        var before = await factory.CountDatasetRowsAsync();
        var response = await client.PostAsync("/api/datasets", Archives.DatasetForm(upload, Uploads[upload]()));
        var problem = await response.ProblemAsync();
        Assert.True(
            expected == response.StatusCode,
            $"{upload}: expected {expected}, got {response.StatusCode}: {problem}"
        );
        Assert.Contains(detailMentions, problem.GetProperty("detail").GetString(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(before, await factory.CountDatasetRowsAsync());
    }

    /// <summary>
    /// The same corpus sent to be scored: the archive's safety is the same; folders name no classes there, so
    /// archives refused for their layout are scored, and one holding nothing but junk has no image.
    /// </summary>
    public static TheoryData<string, HttpStatusCode, string> ScoringCases
    {
        get
        {
            var cases = new TheoryData<string, HttpStatusCode, string>();
            foreach (var c in Cases)
            {
                var (upload, status, mentions) = ((string)c[0], (HttpStatusCode)c[1], (string)c[2]);
                if (upload is "one class" or "files but no class folders")
                    continue;
                if (upload == "only junk")
                    (status, mentions) = (HttpStatusCode.UnprocessableEntity, "no image");
                cases.Add(upload, status, mentions);
            }
            return cases;
        }
    }

    private static Guid? scoringModel;

    private async Task<Guid> ScoringModelAsync()
    {
        if (scoringModel is { } trained)
            return trained;
        var dataset = await (
            await client.PostAsync("/api/datasets", Archives.DatasetForm("hostile scoring", Archives.Zip(Good())))
        ).ReadAsync<Features.Datasets.DatasetResponse>();
        var started = await (
            await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 1 })
        ).ReadAsync<Features.TrainingJobs.TrainingJobResponse>();
        var job = await client.WaitForJobAsync(started.Id, JobPolling.Ended);
        Assert.True(job.Status == Persistence.JobStatus.Succeeded, job.Error);
        return (scoringModel = job.ModelId!.Value).Value;
    }

    [Theory]
    [MemberData(nameof(ScoringCases))]
    public async Task Hostile_or_malformed_zip_sent_to_be_scored_is_refused_and_stores_nothing(
        string upload,
        HttpStatusCode expected,
        string detailMentions
    )
    {
        var model = await ScoringModelAsync();
        var response = await client.PostAsync(
            $"/api/models/{model}/batch-predictions",
            Archives.ZipForm(Uploads[upload]())
        );
        var problem = await response.ProblemAsync();
        Assert.True(
            expected == response.StatusCode,
            $"{upload}: expected {expected}, got {response.StatusCode}: {problem}"
        );
        Assert.Contains(detailMentions, problem.GetProperty("detail").GetString(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(
            (0, 0),
            await factory.QueryAsync(async db =>
                (
                    await db.BatchPredictions.CountAsync(b => b.ModelId == model),
                    await db.BatchPredictionImages.CountAsync()
                )
            )
        );
    }

    [Fact]
    public void Every_case_in_the_corpus_is_run() =>
        Assert.Equal(Uploads.Keys.Order(), Cases.Select(c => (string)c[0]).Order());
}
