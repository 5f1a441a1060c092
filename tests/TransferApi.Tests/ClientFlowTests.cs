using System.IO.Compression;
using TransferApi.Client;

namespace TransferApi.Tests;

/// <summary>
/// The typed .NET client (src/TransferApi.Client) against the real service: upload a folder, train, wait with
/// progress from the event stream, predict a stream, export, batch-predict, and receive a webhook whose signature the
/// client's own check accepts. Every call goes through the client; none is hand-written HTTP.
/// </summary>
[Collection(ServiceCollection.Name)]
public class ClientFlowTests(TransferApiFactory factory)
{
    /// <summary>Reports synchronously, so every report is counted when the wait returns.</summary>
    private sealed class Collect<T>(List<T> into) : IProgress<T>
    {
        public void Report(T value)
        {
            lock (into)
                into.Add(value);
        }
    }

    [Fact]
    public async Task A_service_drives_the_whole_flow_through_the_typed_client()
    {
        var key = await factory.CreateClient().CreateKeyAsync(Persistence.KeyScope.Train, "client-flow");
        using var client = TransferApiClient.Create(factory.Server.BaseAddress, key, factory.Server.CreateHandler());
        await using var receiver = await WebhookReceiver.StartAsync();
        var webhook = await client.CreateWebhookAsync(
            new CreateWebhookRequest
            {
                Url = receiver.Url,
                Events = ["training-job.succeeded", "batch-prediction.completed"],
            }
        );

        var folder = Directory.CreateTempSubdirectory("client-flow-");
        try
        {
            foreach (var label in new[] { "ants", "bees" })
            {
                var into = Directory.CreateDirectory(Path.Combine(folder.FullName, label));
                foreach (var photo in TestData.AntsBeesImages("train", label, 4))
                    File.Copy(photo, Path.Combine(into.FullName, Path.GetFileName(photo)));
            }
            var dataset = await client.UploadFolderAsync("client flow", folder.FullName, Guid.NewGuid().ToString());
            Assert.Equal(8, dataset.ImageCount);

            var started = await client.CreateTrainingJobAsync(
                new CreateTrainingJobRequest
                {
                    DatasetId = dataset.Id,
                    Epochs = 3,
                    Tuning = new TuningRequest { Mode = TuningMode.Off },
                }
            );
            var reports = new List<ProgressResponse>();
            var job = await client.WaitForJobAsync(started.Id, new Collect<ProgressResponse>(reports));
            Assert.Equal(JobStatus.Succeeded, job.Status);
            Assert.NotEmpty(reports);
            var model = job.ModelId!.Value.ToString();

            await using (var photo = File.OpenRead(TestData.AntsBeesImages("val", "bees", 1)[0]))
            {
                var answer = await client.PredictAsync(model, photo, "bee.jpg", topK: 2);
                Assert.Equal(2, answer.Predictions.Count);
                Assert.Equal(1.0, answer.Predictions.Sum(p => p.Probability), 3);
            }

            using (var export = await client.ExportModelAsync(model, "onnx"))
            using (var zip = new ZipArchive(export.Stream))
                Assert.Contains(zip.Entries, e => e.Name == "model.json");

            var batch = await client.CreateBatchPredictionAsync(
                model,
                new CreateBatchPredictionRequest { DatasetId = dataset.Id }
            );
            batch = await client.WaitForBatchPredictionAsync(model, batch.Id);
            Assert.Equal(JobStatus.Succeeded, batch.Status);
            var lines = new List<BatchPredictionLine>();
            await foreach (var line in client.ReadBatchPredictionResultsAsync(model, batch.Id))
                lines.Add(line);
            Assert.Equal(8, lines.Count);
            Assert.All(lines, l => Assert.Contains(l.Label, new[] { "ants", "bees" }));

            // A folder the service has never seen, scored as a zip: each line names its file.
            var scored = await client.WaitForBatchPredictionAsync(
                model,
                (await client.ScoreFolderAsync(model, folder.FullName, topK: 1)).Id
            );
            Assert.Equal((JobStatus.Succeeded, 8), (scored.Status, scored.ImagesTotal));
            var scoredLines = new List<BatchPredictionLine>();
            await foreach (var line in client.ReadBatchPredictionResultsAsync(model, scored.Id))
                scoredLines.Add(line);
            Assert.Equal(
                Directory
                    .EnumerateFiles(folder.FullName, "*", SearchOption.AllDirectories)
                    .Select(f => Path.GetRelativePath(folder.FullName, f).Replace('\\', '/'))
                    .Order(StringComparer.Ordinal),
                scoredLines.Select(l => l.FileName).Order(StringComparer.Ordinal)
            );
            Assert.All(scoredLines, l => Assert.Equal((null, 1), (l.ImageId, l.Predictions.Count)));

            var deliveries = await receiver.WaitForAsync(3);
            Assert.All(deliveries, d => Assert.True(WebhookSignature.Verify(webhook.Secret!, d.Signature!, d.Body)));
            Assert.False(WebhookSignature.Verify(webhook.Secret!, deliveries[0].Signature!, deliveries[0].Body + " "));
            Assert.Equal(
                ["batch-prediction.completed", "batch-prediction.completed", "training-job.succeeded"],
                deliveries.Select(d => d.Type).Order(StringComparer.Ordinal)
            );

            // The service's problems arrive as exceptions with the status and body.
            var missing = await Assert.ThrowsAsync<TransferApiException<ProblemDetails>>(() =>
                client.GetTrainingJobAsync(Guid.NewGuid())
            );
            Assert.Equal(404, missing.StatusCode);
            Assert.StartsWith("id: no training job has id", missing.Result.Detail, StringComparison.Ordinal);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }
}
