using System.Net.Http.Json;
using System.Text.Json;
using TransferApi.TestSupport;

namespace TransferApi.Benchmarks;

/// <summary>
/// Peak memory and time of fine-tuning jobs (two ResNet18 stages, 0.4 MB of activations per image) on generated
/// images, each job in a fresh service process so its peak resident memory is its own: the default
/// Worker:ActivationMemoryBytes against an unbounded budget, and spilling against recomputing.
/// </summary>
internal static class FineTuneMemoryBenchmark
{
    private const int Side = 96;

    /// <param name="compareOverflow">Also run each count with a 1 MB budget, spilling and recomputing.</param>
    public static async Task RunAsync(IReadOnlyList<int> imageCounts, int fineTuneEpochs, bool compareOverflow)
    {
        if (Environment.GetEnvironmentVariable("TRANSFERAPI_TEST_POSTGRES") is not { Length: > 0 } admin)
        {
            Console.WriteLine("finetune: skipped (TRANSFERAPI_TEST_POSTGRES is not set; run scripts/benchmark.sh)");
            return;
        }
        foreach (var count in imageCounts)
        {
            var (database, datasetId) = await UploadAsync(admin, count);
            var runs = new List<(string Label, Dictionary<string, string> Settings)>
            {
                ("default budget", []),
                (
                    "unbounded",
                    new()
                    {
                        ["Worker__ActivationMemoryBytes"] = long.MaxValue.ToString(
                            System.Globalization.CultureInfo.InvariantCulture
                        ),
                    }
                ),
            };
            if (compareOverflow)
            {
                runs.Add(
                    (
                        "spill (1 MB budget)",
                        new()
                        {
                            ["Worker__ActivationMemoryBytes"] = "1000000",
                            ["Worker__ActivationOverflow"] = "Spill",
                        }
                    )
                );
                runs.Add(
                    (
                        "recompute (1 MB budget)",
                        new()
                        {
                            ["Worker__ActivationMemoryBytes"] = "1000000",
                            ["Worker__ActivationOverflow"] = "Recompute",
                        }
                    )
                );
            }
            foreach (var (label, settings) in runs)
            {
                settings["Worker__QueuePollInterval"] = "00:00:00.5";
                var service = await ServiceProcess.StartAsync(admin, settings, database);
                var idle = service.ResidentBytes;
                var job = await TrainAsync(service, datasetId, fineTuneEpochs);
                var activations = job.GetProperty("activations");
                var seconds = (
                    job.GetProperty("finishedAt").GetDateTime() - job.GetProperty("startedAt").GetDateTime()
                ).TotalSeconds;
                Console.WriteLine(
                    $"finetune: {count, 6} images, {label, -24} {activations.GetProperty("storage").GetString(), -10} "
                        + $"activations {activations.GetProperty("bytes").GetInt64() / 1e6, 6:N0} MB; "
                        + $"job {seconds, 6:N1} s; "
                        + $"RSS idle {idle / 1e6, 5:N0} MB, peak {service.PeakResidentBytes / 1e6, 6:N0} MB"
                );
                if (Environment.GetEnvironmentVariable("BENCHMARK_VERBOSE") is "1")
                    foreach (
                        var line in service.Output.Where(l => l.Contains("Training job", StringComparison.Ordinal))
                    )
                        Console.WriteLine($"  {line.Trim()}");
                await service.DisposeAsync(keepDatabase: true);
            }
        }
    }

    private static async Task<(string Database, Guid DatasetId)> UploadAsync(string admin, int count)
    {
        var service = await ServiceProcess.StartAsync(admin, new Dictionary<string, string>());
        var entries = Enumerable
            .Range(0, count)
            .Select(i => ($"{(i % 2 == 0 ? "even" : "odd")}/{i}.png", Archives.NoisePng(Side, Side, i)))
            .ToList();
        var created = await service.Client.PostAsync(
            "/api/datasets",
            Archives.DatasetForm($"fine-tune {count}", Archives.Zip(entries))
        );
        var body = await created.Content.ReadAsStringAsync();
        if (!created.IsSuccessStatusCode)
            throw new InvalidOperationException($"upload failed: {body}");
        var database = service.Database;
        await service.DisposeAsync(keepDatabase: true);
        return (database, JsonDocument.Parse(body).RootElement.GetProperty("id").GetGuid());
    }

    private static async Task<JsonElement> TrainAsync(ServiceProcess service, Guid datasetId, int fineTuneEpochs)
    {
        var answer = await service.Client.PostAsJsonAsync(
            "/api/training-jobs",
            new
            {
                datasetId,
                epochs = 2,
                unfreezeStages = 2,
                fineTuneEpochs,
            }
        );
        var id = JsonDocument.Parse(await answer.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetGuid();
        while (true)
        {
            var job = JsonDocument.Parse(await service.Client.GetStringAsync($"/api/training-jobs/{id}")).RootElement;
            var status = job.GetProperty("status").GetString();
            if (status == "Succeeded")
                return job;
            if (status is "Failed" or "Cancelled")
                throw new InvalidOperationException($"job {id} ended {status}: {job.GetProperty("error")}");
            await Task.Delay(1000);
        }
    }
}
