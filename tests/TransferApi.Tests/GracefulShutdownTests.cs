using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using TransferApi.Features.Datasets;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;
using Xunit.Abstractions;

namespace TransferApi.Tests;

/// <summary>
/// SIGTERM, as Kubernetes and Docker stop a container: a worker checkpoints its running job at the next batch
/// and hands it back to the queue, where another worker process resumes it; the API finishes requests it has
/// already started. Each service runs in a process of its own.
/// </summary>
public class GracefulShutdownTests(ITestOutputHelper output)
{
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(60);

    // Polls the queue often; the claim timeout stays at its default (minutes), so a quick takeover can only be the
    // handback. Logs as in production: one JSON object per line.
    private static readonly Dictionary<string, string> Worker = new()
    {
        ["Worker__QueuePollInterval"] = "00:00:00.5",
        ["Logging__Console__FormatterName"] = "json",
        ["Logging__Console__FormatterOptions__TimestampFormat"] = "HH:mm:ss.fff",
    };

    [Fact]
    public async Task A_worker_stopped_mid_epoch_hands_its_job_back_and_another_process_resumes_it_from_that_batch()
    {
        await using var first = await ServiceProcess.StartAsync(TransferApiFactory.AdminConnection, Worker);
        await using var second = await ServiceProcess.StartAsync(
            TransferApiFactory.AdminConnection,
            Worker,
            first.Database
        );
        var zip = Archives.Zip(
            Enumerable
                .Range(0, 64)
                .Select(i => ($"{(i % 2 == 0 ? "even" : "odd")}/{i}.png", Archives.NoisePng(96, 96, 7000 + i)))
        );
        var dataset = await (
            await first.Client.PostAsync("/api/datasets", Archives.DatasetForm("shutdown", zip))
        ).ReadAsync<DatasetResponse>();
        // Two unfrozen stages in batches of 4: fine-tuning epochs of many slow batches, so a stop lands inside one.
        var options = new
        {
            datasetId = dataset.Id,
            epochs = 2,
            unfreezeStages = 2,
            fineTuneEpochs = 3,
            batchSize = 4,
        };
        var job = await (
            await first.Client.PostAsJsonAsync("/api/training-jobs", options)
        ).ReadAsync<TrainingJobResponse>();

        // In the first third of a fine-tuning epoch (head epochs are 1-2, fine-tuning 3-5), stop the process running
        // it.
        var observed = await first.Client.WaitForJobAsync(
            job.Id,
            j =>
                JobPolling.Ended(j)
                || j.Progress is { Stage: "FineTuning", Epoch: >= 3 and <= 4, Batch: >= 1 } p
                    && p.Batch <= p.TotalBatches / 3,
            seconds: 240
        );
        Assert.Equal(JobStatus.Running, observed.Status);
        var (running, other) = first.HasLogged($"Training job {job.Id} started") ? (first, second) : (second, first);
        Assert.True(running.HasLogged($"Training job {job.Id} started"), "neither process logged the job's start");
        var (exitCode, took) = await running.TerminateAsync(StopTimeout);
        var stoppedAt = DateTime.UtcNow;
        output.WriteLine(
            $"SIGTERM at fine-tuning epoch {observed.Progress.Epoch} batch "
                + $"{observed.Progress.Batch}/{observed.Progress.TotalBatches}: exited {exitCode} after "
                + $"{took.TotalSeconds:F1} s"
        );
        Assert.Equal(0, exitCode);
        // The handback's log line carries the job's and data set's ids as fields of its scopes.
        var handback = JsonDocument
            .Parse(
                running.Output.Single(l =>
                    l.Contains($"Training job {job.Id} handed back to the queue", StringComparison.Ordinal)
                )
            )
            .RootElement;
        var scopes = handback.GetProperty("Scopes").EnumerateArray().ToList();
        Assert.Contains(scopes, s => s.TryGetProperty("JobId", out var id) && id.GetString() == job.Id.ToString());
        Assert.Contains(scopes, s =>
            s.TryGetProperty("DatasetId", out var id) && id.GetString() == dataset.Id.ToString()
        );
        Assert.Contains(scopes, s => s.TryGetProperty("TraceId", out _));

        // Back in the queue (unless the other worker already took it): it says how far it got.
        var handedBack = await other.Client.WaitForJobAsync(job.Id, _ => true);
        if (handedBack.Status == JobStatus.Queued)
            Assert.True(
                handedBack.Progress is { Stage: "Queued", Percent: > 0, EtaSeconds: null },
                $"handed back with progress {handedBack.Progress}"
            );
        else
            Assert.Equal(JobStatus.Running, handedBack.Status);
        var resumed = await other.Client.WaitForJobAsync(job.Id, j => j.ResumedFromEpoch is not null, seconds: 60);
        output.WriteLine(
            $"the other process took it over {(DateTime.UtcNow - stoppedAt).TotalSeconds:F1} s after the stop, after "
                + $"epoch {resumed.ResumedFromEpoch} and {resumed.ResumedFromBatch} batch(es) of the next"
        );
        // It continues from the batch the stopped worker reached, which is no earlier than what the client last saw.
        Assert.Equal(observed.Progress.Epoch - 1, resumed.ResumedFromEpoch);
        Assert.True(
            resumed.ResumedFromBatch >= observed.Progress.Batch,
            $"resumed after batch {resumed.ResumedFromBatch}; {observed.Progress.Batch} were done before the stop"
        );

        var finished = await other.Client.WaitForJobAsync(job.Id, JobPolling.Ended, seconds: 240);
        Assert.Equal(JobStatus.Succeeded, finished.Status);
        // Checked once the job has ended: the row says it resumed before the log line reaches the test.
        Assert.True(other.HasLogged($"Training job {job.Id} started"), "the other process did not run the job");
        Assert.Equal(Enumerable.Range(1, 5), finished.Metrics.Select(m => m.Epoch));
        foreach (
            var line in first
                .Output.Concat(second.Output)
                .Where(l => l.Contains(job.Id.ToString(), StringComparison.Ordinal))
        )
            output.WriteLine(line);

        await other.Client.AssertSameAsUninterruptedAsync(options, finished);
    }

    [Fact]
    public async Task An_api_stopped_during_an_upload_finishes_it_before_exiting()
    {
        await using var service = await ServiceProcess.StartAsync(
            TransferApiFactory.AdminConnection,
            new Dictionary<string, string> { ["Service__Roles"] = "Api" }
        );
        var form = Archives.DatasetForm("drained", Archives.Zip(Archives.TwoClasses(4)));
        var body = await form.ReadAsByteArrayAsync();
        var content = new HalfThenRest(body);
        content.Headers.ContentType = form.Headers.ContentType;

        var upload = service.Client.PostAsync("/api/datasets", content);
        await content.HalfSent;
        var stopping = service.TerminateAsync(StopTimeout);
        // The process is stopping with the request half received; let it stop accepting work, then send the rest.
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(stopping.IsCompleted, "the process exited with a request in flight");
        content.SendRest();

        var response = await upload;
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var dataset = await response.ReadAsync<DatasetResponse>();
        Assert.Equal(8, dataset.ImageCount);
        var (exitCode, took) = await stopping;
        output.WriteLine(
            $"upload finished during shutdown; the process exited {exitCode} {took.TotalSeconds:F1} s after SIGTERM"
        );
        Assert.Equal(0, exitCode);
    }

    /// <summary>A request body sent in two halves, the second only when the test says so.</summary>
    private sealed class HalfThenRest(byte[] body) : HttpContent
    {
        private readonly TaskCompletionSource halfSent = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource sendRest = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task HalfSent => halfSent.Task;

        public void SendRest() => sendRest.TrySetResult();

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            await stream.WriteAsync(body.AsMemory(0, body.Length / 2));
            await stream.FlushAsync();
            halfSent.TrySetResult();
            await sendRest.Task;
            await stream.WriteAsync(body.AsMemory(body.Length / 2));
        }

        protected override bool TryComputeLength(out long length)
        {
            length = body.Length;
            return true;
        }
    }
}
