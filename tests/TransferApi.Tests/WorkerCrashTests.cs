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
        // A checkpoint after every epoch, so the crash below lands after one.
        ["Worker__CheckpointInterval"] = "00:00:00",
    };

    [Fact]
    public async Task A_job_whose_worker_dies_resumes_after_its_last_checkpoint_and_ends_as_if_never_interrupted()
    {
        var first = await ServiceProcess.StartAsync(TransferApiFactory.AdminConnection, QuickTakeover);
        var database = first.Database;
        try
        {
            var zip = Archives.Zip(
                Enumerable
                    .Range(0, 48)
                    .Select(i => ($"{(i % 2 == 0 ? "even" : "odd")}/{i}.png", Archives.NoisePng(96, 96, 5000 + i)))
            );
            var dataset = await (
                await first.Client.PostAsync("/api/datasets", Archives.DatasetForm("crash", zip))
            ).ReadAsync<DatasetResponse>();
            // Fine-tuning epochs are the expensive ones worth resuming: 2 head epochs, then 4 of the last stage.
            var options = new
            {
                datasetId = dataset.Id,
                epochs = 2,
                unfreezeStages = 1,
                fineTuneEpochs = 4,
                batchSize = 8,
            };
            var job = await (
                await first.Client.PostAsJsonAsync("/api/training-jobs", options)
            ).ReadAsync<TrainingJobResponse>();
            var beforeCrash = await first.Client.WaitForJobAsync(
                job.Id,
                j => j.CheckpointEpoch >= 3 || JobPolling.Ended(j),
                seconds: 180
            );
            await first.KillAsync();
            Assert.Equal(JobStatus.Running, beforeCrash.Status);
            output.WriteLine(
                $"worker killed at {beforeCrash.Progress} with epoch {beforeCrash.CheckpointEpoch} checkpointed"
            );

            await using var second = await ServiceProcess.StartAsync(
                TransferApiFactory.AdminConnection,
                QuickTakeover,
                database
            );
            var started = DateTime.UtcNow;
            var resumed = await second.Client.WaitForJobAsync(job.Id, JobPolling.Ended, seconds: 240);
            output.WriteLine(
                $"taken over and finished {(DateTime.UtcNow - started).TotalSeconds:F1} s after the second worker "
                    + $"started, resumed after epoch {resumed.ResumedFromEpoch}"
            );
            Assert.Equal(JobStatus.Succeeded, resumed.Status);
            Assert.True(
                resumed.ResumedFromEpoch >= beforeCrash.CheckpointEpoch,
                $"resumed after epoch {resumed.ResumedFromEpoch}"
            );
            Assert.Null(resumed.CheckpointEpoch);
            Assert.Equal(Enumerable.Range(1, 6), resumed.Metrics.Select(m => m.Epoch));

            await second.Client.AssertSameAsUninterruptedAsync(options, resumed);
        }
        finally
        {
            await first.DisposeAsync(keepDatabase: false);
        }
    }
}
