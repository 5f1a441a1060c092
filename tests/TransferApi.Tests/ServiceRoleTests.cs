using System.Net;
using System.Net.Http.Json;
using Npgsql;
using TransferApi.Features.Datasets;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;

namespace TransferApi.Tests;

/// <summary>
/// Service:Roles as the Kubernetes manifest and compose file use it: an Api process queues jobs but runs none, and a
/// Worker process runs them but serves no API. Each in a process of its own, on one shared database.
/// </summary>
public class ServiceRoleTests
{
    [Fact]
    public async Task An_api_process_queues_jobs_that_only_a_worker_process_runs_and_the_worker_serves_no_api()
    {
        await using var api = await ServiceProcess.StartAsync(
            TransferApiFactory.AdminConnection,
            new Dictionary<string, string> { ["Service__Roles"] = "Api" }
        );
        var zip = Archives.Zip(
            Enumerable
                .Range(0, 12)
                .Select(i => ($"{(i % 2 == 0 ? "even" : "odd")}/{i}.png", Archives.NoisePng(64, 64, 700 + i)))
        );
        var dataset = await (
            await api.Client.PostAsync("/api/datasets", Archives.DatasetForm("roles", zip))
        ).ReadAsync<DatasetResponse>();
        var job = await (
            await api.Client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 1 })
        ).ReadAsync<TrainingJobResponse>();

        // Long enough for an in-process worker to have taken it several times over (it polls every 0.5-15 s).
        await Task.Delay(TimeSpan.FromSeconds(8));
        var waiting = await api.Client.GetFromJsonAsync<TrainingJobResponse>(
            $"/api/training-jobs/{job.Id}",
            Json.Options
        );
        Assert.Equal(JobStatus.Queued, waiting!.Status);
        Assert.Equal(0, await HangfireServersAsync(api.ConnectionString));

        var worker = await ServiceProcess.StartAsync(
            TransferApiFactory.AdminConnection,
            new Dictionary<string, string>
            {
                ["Service__Roles"] = "Worker",
                ["Worker__QueuePollInterval"] = "00:00:00.5",
            },
            api.Database
        );
        try
        {
            await AssertWorkerRunsTheJobAndServesNoApiAsync(api, worker, job.Id);
        }
        finally
        {
            // The api process owns the database and drops it.
            await worker.DisposeAsync(keepDatabase: true);
        }
    }

    private static async Task AssertWorkerRunsTheJobAndServesNoApiAsync(
        ServiceProcess api,
        ServiceProcess worker,
        Guid jobId
    )
    {
        Assert.Equal(HttpStatusCode.NotFound, (await worker.Client.GetAsync("/api/datasets")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await worker.Client.GetAsync($"/api/training-jobs/{jobId}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await worker.Client.GetAsync("/swagger/v1/swagger.json")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await worker.Client.GetAsync("/health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await worker.Client.GetAsync("/metrics")).StatusCode);

        var ended = await api.Client.WaitForJobAsync(jobId, JobPolling.Ended, seconds: 180);
        Assert.Equal(JobStatus.Succeeded, ended.Status);
        Assert.NotNull(ended.ModelId);
    }

    private static async Task<long> HangfireServersAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var count = new NpgsqlCommand("SELECT count(*) FROM hangfire.server", connection);
        return (long)(await count.ExecuteScalarAsync())!;
    }
}
