using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;

namespace TransferApi.Tests;

public static class JobPolling
{
    public static bool Ended(TrainingJobResponse job) => job.Status is not (JobStatus.Queued or JobStatus.Running);

    /// <summary>Polls GET /api/training-jobs/{id} until <paramref name="until"/> holds; fails with the job's state after <paramref name="seconds"/>.</summary>
    public static async Task<TrainingJobResponse> WaitForJobAsync(this HttpClient client, Guid jobId, Func<TrainingJobResponse, bool> until, int seconds = 120)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var job = await (await client.GetAsync($"/api/training-jobs/{jobId}")).ReadAsync<TrainingJobResponse>();
            if (until(job)) return job;
            Assert.True(DateTime.UtcNow < deadline, $"job {jobId} still {job.Status} at {job.Progress}");
            await Task.Delay(100);
        }
    }
}
