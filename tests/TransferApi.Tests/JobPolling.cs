using System.Net.Http.Json;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;

namespace TransferApi.Tests;

public static class JobPolling
{
    public static bool Ended(TrainingJobResponse job) => job.Status is not (JobStatus.Queued or JobStatus.Running);

    /// <summary>Polls GET /api/training-jobs/{id} until <paramref name="until"/> holds; fails with the job's state
    /// after <paramref name="seconds"/>.</summary>
    public static async Task<TrainingJobResponse> WaitForJobAsync(
        this HttpClient client,
        Guid jobId,
        Func<TrainingJobResponse, bool> until,
        int seconds = 120
    )
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var job = await (await client.GetAsync($"/api/training-jobs/{jobId}")).ReadAsync<TrainingJobResponse>();
            if (until(job))
                return job;
            Assert.True(DateTime.UtcNow < deadline, $"job {jobId} still {job.Status} at {job.Progress}");
            await Task.Delay(100);
        }
    }

    /// <summary>
    /// Trains the same job again, never interrupted, on the same service: its metrics must equal those of
    /// <paramref name="resumed"/>, a job that was interrupted and resumed.
    /// </summary>
    public static async Task AssertSameAsUninterruptedAsync(
        this HttpClient client,
        object options,
        TrainingJobResponse resumed
    )
    {
        var control = await (
            await client.PostAsJsonAsync("/api/training-jobs", options)
        ).ReadAsync<TrainingJobResponse>();
        var uninterrupted = await client.WaitForJobAsync(control.Id, Ended, seconds: 240);
        Assert.Equal(JobStatus.Succeeded, uninterrupted.Status);
        Assert.Null(uninterrupted.ResumedFromEpoch);
        Assert.Equal(uninterrupted.Metrics.Select(m => m.Epoch), resumed.Metrics.Select(m => m.Epoch));
        foreach (var (expected, actual) in uninterrupted.Metrics.Zip(resumed.Metrics))
        {
            Assert.Equal(expected.TrainLoss, actual.TrainLoss, 1e-6);
            Assert.Equal(expected.ValLoss!.Value, actual.ValLoss!.Value, 1e-6);
        }
    }
}
