using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using TransferApi.Features.Datasets;
using Xunit.Abstractions;

namespace TransferApi.Tests;

public class LargeUploadTests(ITestOutputHelper output)
{
    private const long HeapLimitBytes = 192L * 1024 * 1024;

    [Fact]
    public async Task A_data_set_larger_than_the_service_memory_limit_is_ingested()
    {
        // 400 incompressible 512x512 PNGs (~790 KB each, ~300 MB), stored uncompressed, streamed from disk.
        const int images = 400;
        var zipPath = Path.Combine(Path.GetTempPath(), $"transferapi-large-{Guid.NewGuid():N}.zip");
        try
        {
            await using (var file = File.Create(zipPath))
            using (var zip = new ZipArchive(file, ZipArchiveMode.Create))
            {
                for (var i = 0; i < images; i++)
                {
                    await using var entry = zip.CreateEntry(
                            $"{(i % 2 == 0 ? "noise-a" : "noise-b")}/{i}.png",
                            CompressionLevel.NoCompression
                        )
                        .Open();
                    await entry.WriteAsync(Archives.NoisePng(512, 512, i));
                }
            }
            var zipBytes = new FileInfo(zipPath).Length;
            Assert.True(
                zipBytes > HeapLimitBytes * 3 / 2,
                $"the archive ({zipBytes:N0} bytes) must dwarf the heap limit"
            );

            await using var service = await ServiceProcess.StartAsync(
                TransferApiFactory.AdminConnection,
                new Dictionary<string, string>
                {
                    ["DOTNET_GCHeapHardLimit"] = $"0x{HeapLimitBytes:X}",
                    ["DOTNET_gcServer"] = "0",
                    ["Service__Roles"] = "Api",
                }
            );
            await using var upload = File.OpenRead(zipPath);
            var content = new StreamContent(upload);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
            var form = new MultipartFormDataContent
            {
                { new StringContent("larger than memory"), "name" },
                { content, "file", "large.zip" },
            };
            var started = DateTime.UtcNow;
            var response = await service.Client.PostAsync("/api/datasets", form);
            var seconds = (DateTime.UtcNow - started).TotalSeconds;

            Assert.Equal(HttpStatusCode.Created, response.StatusCode);
            var dataset = await response.ReadAsync<DatasetResponse>();
            Assert.Equal(images, dataset.ImageCount);
            Assert.Equal(zipBytes, dataset.ImageStats!.TotalBytes, zipBytes / 50.0);
            output.WriteLine(
                $"{zipBytes / 1e6:F0} MB, {images} images in {seconds:F1} s ({images / seconds:F0} images/s, "
                    + $"{zipBytes / 1e6 / seconds:F1} MB/s) "
                    + $"under a {HeapLimitBytes >> 20} MiB GC heap limit; peak RSS "
                    + $"{service.PeakResidentBytes / 1e6:F0} MB"
            );
        }
        finally
        {
            File.Delete(zipPath);
        }
    }
}
