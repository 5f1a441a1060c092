using System.Diagnostics;
using System.IO.Compression;
using System.Net.Http.Headers;
using TransferApi.TestSupport;

namespace TransferApi.Benchmarks;

/// <summary>
/// Upload throughput (images/s, MB/s) of the real service process for ants-bees, 2,000 generated images of
/// about 100 KB, and a 1 GB archive, each in a fresh process so its peak resident memory is its own.
/// </summary>
internal static class IngestionBenchmark
{
    public static async Task RunAsync(bool quick)
    {
        if (Environment.GetEnvironmentVariable("TRANSFERAPI_TEST_POSTGRES") is not { Length: > 0 } admin)
        {
            Console.WriteLine("ingestion: skipped (TRANSFERAPI_TEST_POSTGRES is not set; run scripts/benchmark.sh)");
            return;
        }
        Console.WriteLine(
            "data set                         | images |    MB | seconds | images/s |  MB/s | service peak RSS"
        );
        await MeasureAsync(admin, "ants-bees train/ + val/", WriteZip(AntsBees()));
        await MeasureAsync(admin, "2,000 generated ~100 KB PNGs", WriteZip(Generated(2000, 182)));
        var bigCount = quick ? 330 : 1320;
        await MeasureAsync(
            admin,
            $"{(quick ? "256 MB" : "1 GB")} of 512x512 noise PNGs",
            WriteZip(Generated(bigCount, 512))
        );
    }

    private static IEnumerable<(string Entry, Func<byte[]> Data)> AntsBees() =>
        from split in new[] { "train", "val" }
        from label in new[] { "ants", "bees" }
        from path in TestData.AntsBeesImages(split, label)
        select ($"{split}/{label}/{Path.GetFileName(path)}", (Func<byte[]>)(() => File.ReadAllBytes(path)));

    private static IEnumerable<(string Entry, Func<byte[]> Data)> Generated(int count, int side) =>
        Enumerable
            .Range(0, count)
            .Select(i => ($"class-{i % 4}/{i}.png", (Func<byte[]>)(() => Archives.NoisePng(side, side, i))));

    private static (string Path, int Images) WriteZip(IEnumerable<(string Entry, Func<byte[]> Data)> entries)
    {
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"transferapi-bench-{Guid.NewGuid():N}.zip");
        var count = 0;
        using (var zip = new ZipArchive(File.Create(path), ZipArchiveMode.Create))
        {
            foreach (var (entry, data) in entries)
            {
                using var stream = zip.CreateEntry(entry, CompressionLevel.NoCompression).Open();
                stream.Write(data());
                count++;
            }
        }
        return (path, count);
    }

    private static async Task MeasureAsync(string admin, string name, (string Path, int Images) archive)
    {
        try
        {
            await using var service = await ServiceProcess.StartAsync(
                admin,
                new Dictionary<string, string> { ["Service__Roles"] = "Api" }
            );
            var megabytes = new FileInfo(archive.Path).Length / 1e6;
            await using var upload = File.OpenRead(archive.Path);
            var file = new StreamContent(upload);
            file.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
            var clock = Stopwatch.StartNew();
            var response = await service.Client.PostAsync(
                "/api/datasets",
                new MultipartFormDataContent { { new StringContent(name), "name" }, { file, "file", "data.zip" } }
            );
            var seconds = clock.Elapsed.TotalSeconds;
            if (!response.IsSuccessStatusCode)
                throw new InvalidOperationException(
                    $"{name}: {response.StatusCode} {await response.Content.ReadAsStringAsync()}"
                );
            Console.WriteLine(
                $"{name, -32} | {archive.Images, 6} | {megabytes, 5:F0} | {seconds, 7:F1} | "
                    + $"{archive.Images / seconds, 8:F0} | {megabytes / seconds, 5:F1} | "
                    + $"{service.PeakResidentBytes / 1e6, 6:F0} MB"
            );
        }
        finally
        {
            File.Delete(archive.Path);
        }
    }
}
