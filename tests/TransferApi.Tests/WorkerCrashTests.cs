using System.Net.Http.Json;
using TransferApi.Features.Datasets;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;
using Xunit.Abstractions;

namespace TransferApi.Tests;

public class WorkerCrashTests(ITestOutputHelper output)
{
    private static readonly Dictionary<string, string> QuickTakeover = new()
    {
        ["Worker__InvisibilityTimeout"] = "00:00:05",
        ["Worker__QueuePollInterval"] = "00:00:00.5",
    };

    [Fact]
    public async Task A_job_whose_worker_dies_is_finished_by_the_next_worker_without_duplicate_metrics()
    {
        var first = await ServiceProcess.StartAsync(TransferApiFactory.AdminConnection, QuickTakeover);
        var database = first.Database;
        try
        {
            // Uncached images, so the first worker is still extracting features when it dies.
            var zip = Archives.Zip(Enumerable.Range(0, 128).Select(i => ($"{(i % 2 == 0 ? "even" : "odd")}/{i}.png", Archives.NoisePng(96, 96, 5000 + i))));
            var dataset = await (await first.Client.PostAsync("/api/datasets", Archives.DatasetForm("crash", zip))).ReadAsync<DatasetResponse>();
            var job = await (await first.Client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 4 })).ReadAsync<TrainingJobResponse>();
            await first.Client.WaitForJobAsync(job.Id, j => j.Progress.Stage == "ExtractingFeatures" && j.Progress.Batch >= 1);
            await first.KillAsync();

            await using var second = await ServiceProcess.StartAsync(TransferApiFactory.AdminConnection, QuickTakeover, database);
            var started = DateTime.UtcNow;
            var finished = await second.Client.WaitForJobAsync(job.Id, JobPolling.Ended, seconds: 180);
            output.WriteLine($"taken over and finished {(DateTime.UtcNow - started).TotalSeconds:F1} s after the second worker started");

            Assert.Equal(JobStatus.Succeeded, finished.Status);
            Assert.Equal([1, 2, 3, 4], finished.Metrics.Select(m => m.Epoch));
            Assert.NotNull(finished.ModelId);
        }
        finally
        {
            await first.DisposeAsync(keepDatabase: false);
        }
    }
}
