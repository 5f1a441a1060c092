using TransferApi.TestSupport;

namespace TransferApi.Benchmarks;

/// <summary>
/// Issue 20's sequence: frozen-backbone jobs in a row on images the service has not seen, then jobs on cached
/// features, in one service process; prints its resident memory after each job and the peak.
/// </summary>
internal static class MemoryBenchmark
{
    public static async Task RunAsync(
        int extractionJobs,
        int cachedJobs,
        int imagesPerJob,
        IDictionary<string, string>? environment = null
    )
    {
        if (Environment.GetEnvironmentVariable("TRANSFERAPI_TEST_POSTGRES") is not { Length: > 0 } admin)
        {
            Console.WriteLine("memory: skipped (TRANSFERAPI_TEST_POSTGRES is not set; run scripts/benchmark.sh)");
            return;
        }
        var settings = new Dictionary<string, string>(environment ?? new Dictionary<string, string>())
        {
            ["Worker__QueuePollInterval"] = "00:00:00.5",
        };
        await using var service = await ServiceProcess.StartAsync(admin, settings);
        var started = service.ResidentBytes;
        var result = await MemoryWorkload.RunAsync(service, extractionJobs, cachedJobs, imagesPerJob);
        static string Mb(IEnumerable<long> values) => string.Join(" ", values.Select(v => $"{v / 1e6:N0}"));
        Console.WriteLine(
            $"memory: RSS at start {started / 1e6:N0} MB; after each of {extractionJobs} extraction jobs "
                + $"({imagesPerJob} new images each), MB: {Mb(result.ExtractionRss)}"
        );
        Console.WriteLine(
            $"memory: after each of {cachedJobs} jobs on cached features, MB: {Mb(result.CachedRss)}; peak "
                + $"{result.PeakRss / 1e6:N0} MB"
        );
        foreach (var line in service.Output.Where(l => l.Contains("native memory returned", StringComparison.Ordinal)))
            Console.WriteLine($"  {line.Trim()}");
    }
}
