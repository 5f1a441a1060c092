using System.Net;
using System.Net.Http.Json;
using TransferApi.Features.Datasets;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;
using Xunit.Abstractions;

namespace TransferApi.Tests;

/// <summary>
/// One tenant floods the queue; another tenant's single job still starts next. Workers take jobs round-robin
/// across tenants, and a tenant's backlog is capped (Quotas:MaxQueuedJobsPerTenant) with 429 and Retry-After.
/// The service runs in a process of its own, with one worker, as a small deployment would.
/// </summary>
public class FairnessTests(ITestOutputHelper output)
{
    private const int MaxQueued = 50;

    [Fact]
    public async Task A_tenant_with_50_queued_jobs_delays_another_tenants_job_by_at_most_the_one_already_handed_out()
    {
        await using var service = await ServiceProcess.StartAsync(
            TransferApiFactory.AdminConnection,
            new Dictionary<string, string>
            {
                ["Quotas__MaxQueuedJobsPerTenant"] = MaxQueued.ToString(
                    System.Globalization.CultureInfo.InvariantCulture
                ),
                ["Worker__QueuePollInterval"] = "00:00:00.5",
            }
        );
        var flooder = Client(service, await service.Client.CreateKeyAsync(KeyScope.Train, "flood"));
        var quiet = Client(service, await service.Client.CreateKeyAsync(KeyScope.Train, "quiet"));
        var floodData = await UploadAsync(flooder, 1000);
        var quietData = await UploadAsync(quiet, 2000);

        // Jobs of a few seconds (many small head steps), posted six at a time: the flood outpaces the one worker.
        var flood = new
        {
            datasetId = floodData,
            epochs = 300,
            batchSize = 1,
        };
        var answers = new List<HttpResponseMessage>();
        for (var wave = 0; wave < 10; wave++)
            answers.AddRange(
                await Task.WhenAll(
                    Enumerable.Range(0, 6).Select(_ => flooder.PostAsJsonAsync("/api/training-jobs", flood))
                )
            );
        var accepted = new List<Guid>();
        foreach (var answer in answers.Where(a => a.StatusCode == HttpStatusCode.Accepted))
            accepted.Add((await answer.ReadAsync<TrainingJobResponse>()).Id);
        var refused = answers.FirstOrDefault(a => a.StatusCode != HttpStatusCode.Accepted);
        Assert.NotNull(refused);
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.True(refused.Headers.RetryAfter?.Delta is { TotalSeconds: >= 1 }, "a 429 says when to retry");
        Assert.Contains(
            $"already has {MaxQueued} job(s) queued",
            (await refused.ProblemAsync()).GetProperty("detail").GetString()
        );
        // The ones that started meanwhile no longer count as queued.
        Assert.InRange(accepted.Count, MaxQueued, answers.Count - 1);

        var posted = await (
            await quiet.PostAsJsonAsync("/api/training-jobs", new { datasetId = quietData, epochs = 1 })
        ).ReadAsync<TrainingJobResponse>();
        var quietJob = await quiet.WaitForJobAsync(posted.Id, JobPolling.Ended, seconds: 120);
        Assert.Equal(JobStatus.Succeeded, quietJob.Status);

        var floodJobs = new List<TrainingJobResponse>();
        foreach (var id in accepted)
            floodJobs.Add(await (await flooder.GetAsync($"/api/training-jobs/{id}")).ReadAsync<TrainingJobResponse>());
        var startedBefore = floodJobs.Count(j => j.StartedAt > posted.CreatedAt && j.StartedAt < quietJob.StartedAt);
        var stillQueued = floodJobs.Count(j => j.Status == JobStatus.Queued);
        output.WriteLine(
            $"{accepted.Count} flood jobs accepted; the quiet tenant's job waited "
                + $"{(quietJob.StartedAt!.Value - posted.CreatedAt).TotalSeconds:F1} s, "
                + $"{startedBefore} flood job(s) started in between, {stillQueued} still queued when it ended"
        );
        Assert.InRange(startedBefore, 0, 1);
        Assert.True(stillQueued > MaxQueued / 2, "the flood must still be queued for this to show anything");
    }

    private static HttpClient Client(ServiceProcess service, string key)
    {
        var client = new HttpClient { BaseAddress = service.Client.BaseAddress };
        client.DefaultRequestHeaders.Add("X-Api-Key", key);
        return client;
    }

    private static async Task<Guid> UploadAsync(HttpClient client, int seed)
    {
        var zip = Archives.Zip(
            Enumerable
                .Range(0, 6)
                .Select(i => ($"{(i % 2 == 0 ? "cats" : "dogs")}/{i}.png", Archives.NoisePng(24, 24, seed + i)))
        );
        var created = await client.PostAsync("/api/datasets", Archives.DatasetForm("fairness", zip));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        return (await created.ReadAsync<DatasetResponse>()).Id;
    }
}
