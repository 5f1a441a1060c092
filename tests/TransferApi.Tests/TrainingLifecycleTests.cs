using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using TransferApi.Features.Datasets;
using TransferApi.Features.Models;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;

namespace TransferApi.Tests;

[Collection(ServiceCollection.Name)]
public class TrainingLifecycleTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    private async Task<Guid> UploadAsync(int perClass)
    {
        var response = await client.PostAsync(
            "/api/datasets",
            Archives.DatasetForm("lifecycle", Archives.Zip(Archives.TwoClasses(perClass)))
        );
        return (await response.ReadAsync<DatasetResponse>()).Id;
    }

    private async Task<TrainingJobResponse> StartAsync(object request)
    {
        var response = await client.PostAsJsonAsync("/api/training-jobs", request);
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        return await response.ReadAsync<TrainingJobResponse>();
    }

    private Task<TrainingJobResponse> WaitAsync(Guid jobId, Func<TrainingJobResponse, bool> until) =>
        client.WaitForJobAsync(jobId, until);

    [Fact]
    public async Task Events_stream_progress_and_each_epoch_then_the_final_status()
    {
        var job = await StartAsync(new { datasetId = await UploadAsync(6), epochs = 5 });
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/training-jobs/{job.Id}/events");
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);

        var events = new List<(string Event, JsonElement Data)>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        string? name = null;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal))
                name = line[7..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal))
                events.Add((name!, JsonDocument.Parse(line[6..]).RootElement));
        }

        var progress = events.Where(e => e.Event == "progress").Select(e => e.Data).ToList();
        Assert.NotEmpty(progress);
        Assert.Equal("Done", progress[^1].GetProperty("stage").GetString());
        Assert.Equal(100, progress[^1].GetProperty("percent").GetDouble());
        Assert.Equal(
            [1, 2, 3, 4, 5],
            events.Where(e => e.Event == "metrics").Select(e => e.Data.GetProperty("epoch").GetInt32())
        );
        var (last, status) = events[^1];
        Assert.Equal("status", last);
        Assert.Equal("Succeeded", status.GetProperty("status").GetString());
        Assert.NotEqual(JsonValueKind.Null, status.GetProperty("modelId").ValueKind);
    }

    [Fact]
    public async Task Cancelling_a_running_job_keeps_the_best_epoch_so_far_as_a_model()
    {
        var job = await StartAsync(
            new
            {
                datasetId = await UploadAsync(6),
                epochs = 1000,
                batchSize = 2,
            }
        );
        await WaitAsync(job.Id, j => j.Metrics.Count >= 2);

        var cancel = await client.PostAsync($"/api/training-jobs/{job.Id}/cancel", null);
        Assert.Equal(HttpStatusCode.Accepted, cancel.StatusCode);
        var ended = await WaitAsync(job.Id, j => j.Status != JobStatus.Running);

        Assert.Equal(JobStatus.Cancelled, ended.Status);
        Assert.InRange(ended.Metrics.Count, 2, 999);
        Assert.NotNull(ended.ModelId);
        var model = await (await client.GetAsync($"/api/models/{ended.ModelId}")).ReadAsync<ModelResponse>();
        Assert.InRange(model.Metrics.BestEpoch, 1, ended.Metrics.Count);
        var predicted = await client.PostAsync(
            $"/api/models/{model.Id}/predict",
            Archives.ImageForm(Archives.Photo("val", "bees", 0).Item2)
        );
        Assert.Equal(HttpStatusCode.OK, predicted.StatusCode);

        var again = await client.PostAsync($"/api/training-jobs/{job.Id}/cancel", null);
        Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
        await again.ProblemAsync();
    }

    [Fact]
    public async Task Cancelling_during_feature_extraction_ends_the_job_without_a_model()
    {
        // Images no other test uses: their features are not cached, so extraction really runs (three batches).
        var zip = Archives.Zip(
            Enumerable
                .Range(0, 96)
                .Select(i => ($"{(i % 2 == 0 ? "even" : "odd")}/{i}.png", Archives.NoisePng(96, 96, 7000 + i)))
        );
        var dataset = await (
            await client.PostAsync("/api/datasets", Archives.DatasetForm("uncached", zip))
        ).ReadAsync<DatasetResponse>();
        var job = await StartAsync(new { datasetId = dataset.Id, epochs = 5 });
        await WaitAsync(job.Id, j => j.Progress.Stage == "ExtractingFeatures");
        Assert.Equal(
            HttpStatusCode.Accepted,
            (await client.PostAsync($"/api/training-jobs/{job.Id}/cancel", null)).StatusCode
        );
        var ended = await WaitAsync(job.Id, j => j.Status != JobStatus.Running);
        Assert.Equal(JobStatus.Cancelled, ended.Status);
        Assert.Null(ended.ModelId);
        Assert.Empty(ended.Metrics);
        Assert.NotNull(ended.FinishedAt);
    }

    [Fact]
    public async Task Features_are_computed_once_by_the_data_sets_health_and_reused_by_every_job()
    {
        // Images no other test uses, so the cache starts cold for them.
        var zip = Archives.Zip(
            Enumerable
                .Range(0, 10)
                .Select(i => ($"{(i % 2 == 0 ? "even" : "odd")}/{i}.png", Archives.NoisePng(64, 48, 9000 + i)))
        );
        async Task<Guid> UploadUniqueAsync() =>
            (
                await (
                    await client.PostAsync("/api/datasets", Archives.DatasetForm("cache", zip))
                ).ReadAsync<DatasetResponse>()
            ).Id;
        var datasetId = await UploadUniqueAsync();
        // The data set's health run embeds its images first (and caches them): the first job needs no backbone pass.
        var health = await client.ReadyHealthAsync(datasetId);
        Assert.Equal(10, health.FeaturesComputed);
        var first = await WaitAsync((await StartAsync(new { datasetId, epochs = 3 })).Id, JobPolling.Ended);
        var second = await WaitAsync(
            (
                await StartAsync(
                    new
                    {
                        datasetId,
                        epochs = 3,
                        head = "Mlp",
                    }
                )
            ).Id,
            JobPolling.Ended
        );
        // Another data set holding the same photos shares the cache too: it is keyed by content, not by data set.
        var otherDatasetId = await UploadUniqueAsync();
        var third = await WaitAsync(
            (await StartAsync(new { datasetId = otherDatasetId, epochs = 3 })).Id,
            JobPolling.Ended
        );

        var models = new List<ModelResponse>();
        foreach (var job in new[] { first, second, third })
        {
            Assert.Equal(JobStatus.Succeeded, job.Status);
            models.Add(await (await client.GetAsync($"/api/models/{job.ModelId}")).ReadAsync<ModelResponse>());
        }
        Assert.Equal((0, 10), (models[0].Metrics.ImagesEmbedded, models[0].Metrics.FeaturesFromCache));
        Assert.Equal((0, 10), (models[1].Metrics.ImagesEmbedded, models[1].Metrics.FeaturesFromCache));
        Assert.Equal((0, 10), (models[2].Metrics.ImagesEmbedded, models[2].Metrics.FeaturesFromCache));
        // Same features, same options: the same metrics to 1e-6 (BLAS may round the last bit differently run to run).
        Assert.All(first.Metrics.Zip(third.Metrics), pair =>
            Assert.Equal(pair.First.ValLoss!.Value, pair.Second.ValLoss!.Value, 1e-6)
        );
    }

    [Fact]
    public async Task The_report_scores_the_model_on_the_test_split()
    {
        var upload = await client.PostAsync(
            "/api/datasets",
            Archives.DatasetForm(
                "with test split",
                Archives.Zip(Archives.TwoClasses(8)),
                fields: [("validationFraction", "0.25"), ("testFraction", "0.25")]
            )
        );
        var datasetId = (await upload.ReadAsync<DatasetResponse>()).Id;
        var job = await StartAsync(new { datasetId, epochs = 5 });
        var early = await client.GetAsync($"/api/training-jobs/{job.Id}/report");
        Assert.Contains(early.StatusCode, new[] { HttpStatusCode.Conflict, HttpStatusCode.OK });
        await WaitAsync(job.Id, j => j.Status == JobStatus.Succeeded);

        var report = await (await client.GetAsync($"/api/training-jobs/{job.Id}/report")).ReadAsync<JsonElement>();
        Assert.Equal("test", report.GetProperty("split").GetString());
        Assert.Equal(
            ["ants", "bees"],
            report.GetProperty("confusionMatrix").GetProperty("labels").EnumerateArray().Select(l => l.GetString())
        );
        var counts = report
            .GetProperty("confusionMatrix")
            .GetProperty("counts")
            .EnumerateArray()
            .Select(r => r.EnumerateArray().Select(c => c.GetInt32()).ToArray())
            .ToArray();
        Assert.Equal([2, 2], counts.Select(r => r.Sum()));
        Assert.Equal(
            [2, 2],
            report.GetProperty("perClass").EnumerateArray().Select(c => c.GetProperty("support").GetInt32())
        );
        Assert.Equal((counts[0][0] + counts[1][1]) / 4.0, report.GetProperty("accuracy").GetDouble(), 9);
        Assert.Equal(1.0, report.GetProperty("top5Accuracy").GetDouble());
        foreach (var field in new[] { "macroF1", "logLoss" })
            Assert.True(report.GetProperty(field).GetDouble() >= 0);

        foreach (var (chart, width) in new[] { ("learning-curves.png", 900), ("confusion-matrix.png", 540) })
        {
            var png = await client.GetAsync($"/api/training-jobs/{job.Id}/charts/{chart}");
            Assert.Equal(HttpStatusCode.OK, png.StatusCode);
            Assert.Equal("image/png", png.Content.Headers.ContentType?.MediaType);
            var info = SixLabors.ImageSharp.Image.Identify(await png.Content.ReadAsByteArrayAsync());
            Assert.Equal(width, info.Width);
        }
        Assert.Equal(
            HttpStatusCode.NotFound,
            (await client.GetAsync($"/api/training-jobs/{Guid.NewGuid()}/charts/learning-curves.png")).StatusCode
        );
    }

    [Fact]
    public async Task A_fine_tuned_model_predicts_through_its_own_last_stage()
    {
        var upload = await client.PostAsync(
            "/api/datasets",
            Archives.DatasetForm(
                "fine-tune",
                Archives.Zip(Archives.TwoClasses(4)),
                fields: [("validationFraction", "0")]
            )
        );
        var datasetId = (await upload.ReadAsync<DatasetResponse>()).Id;
        var job = await WaitAsync(
            (
                await StartAsync(
                    new
                    {
                        datasetId,
                        epochs = 2,
                        unfreezeStages = 1,
                        fineTuneEpochs = 1,
                        validationFraction = 0,
                    }
                )
            ).Id,
            JobPolling.Ended
        );
        Assert.Equal(JobStatus.Succeeded, job.Status);
        Assert.Equal([1, 2, 3], job.Metrics.Select(m => m.Epoch));
        Assert.Equal(0.001 / 10, job.Metrics[2].LearningRate, 9);
        // 8 images of 256 x 14 x 14 floats entering the last stage: over the test budget, so in a temporary file.
        Assert.Equal(
            new ActivationsResponse("Spilled", 8L * 256 * 14 * 14 * 4, TransferApiFactory.ActivationMemoryBytes),
            job.Activations
        );

        var model = await (await client.GetAsync($"/api/models/{job.ModelId}")).ReadAsync<ModelResponse>();
        Assert.Equal(1, model.FineTunedStages);
        var predicted = await client.PostAsync(
            $"/api/models/{model.Id}/predict",
            Archives.ImageForm(Archives.Photo("val", "ants", 1).Item2)
        );
        Assert.Equal(HttpStatusCode.OK, predicted.StatusCode);
        Assert.Equal(1.0, (await predicted.ReadAsync<PredictResponse>()).Predictions.Sum(p => p.Probability), 4);
    }

    [Fact]
    public async Task Augmented_views_are_embedded_for_the_training_images()
    {
        var datasetId = await UploadAsync(4);
        var job = await WaitAsync(
            (
                await StartAsync(
                    new
                    {
                        datasetId,
                        epochs = 2,
                        augmentation = new { views = 2, colorJitter = 0.1 },
                    }
                )
            ).Id,
            JobPolling.Ended
        );
        Assert.Equal(JobStatus.Succeeded, job.Status);
        Assert.Equal(2, job.Options.Augmentation.Views);
        Assert.Null(job.Activations);
        var model = await (await client.GetAsync($"/api/models/{job.ModelId}")).ReadAsync<ModelResponse>();
        Assert.True(
            model.Metrics.ImagesEmbedded >= 2 * model.Metrics.TrainImages,
            $"{model.Metrics.ImagesEmbedded} embedded for {model.Metrics.TrainImages} training images"
        );
    }

    [Fact]
    public async Task Cancelling_an_unknown_job_is_a_404_problem()
    {
        var response = await client.PostAsync($"/api/training-jobs/{Guid.NewGuid()}/cancel", null);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        await response.ProblemAsync();
    }
}
