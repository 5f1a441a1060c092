using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using TransferApi.Features.Datasets;
using TransferApi.Features.Models;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;
using Xunit.Abstractions;

namespace TransferApi.Tests;

/// <summary>
/// Bulk scoring: a model scores a data set's photos in a worker, and every line of the results is what /predict
/// answers for that image; a frozen model reads cached features; the end is announced to webhooks.
/// </summary>
[Collection(ServiceCollection.Name)]
public class BatchPredictionTests(TransferApiFactory factory, ITestOutputHelper output)
{
    private readonly HttpClient admin = factory.CreateClient();

    private static async Task<BatchPredictionResponse> WaitForBatchAsync(
        HttpClient client,
        BatchPredictionResponse batch
    )
    {
        var deadline = DateTime.UtcNow.AddSeconds(300);
        while (true)
        {
            var current = await (
                await client.GetAsync($"/api/models/{batch.ModelId}/batch-predictions/{batch.Id}")
            ).ReadAsync<BatchPredictionResponse>();
            if (current.Status is not (JobStatus.Queued or JobStatus.Running) || DateTime.UtcNow > deadline)
                return current;
            await Task.Delay(250);
        }
    }

    private static async Task<List<JsonElement>> ResultLinesAsync(HttpClient client, BatchPredictionResponse batch)
    {
        var response = await client.GetAsync(batch.Results);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/jsonl", response.Content.Headers.ContentType?.MediaType);
        return (await response.Content.ReadAsStringAsync())
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => JsonDocument.Parse(line).RootElement)
            .ToList();
    }

    /// <summary>Every line against /predict of the same stored bytes: same labels in the same order, probabilities
    /// and novelty within <paramref name="tolerance"/>. Returns the largest probability difference.</summary>
    private static Task<double> AssertSameAsPredictAsync(
        HttpClient client,
        Guid model,
        Guid dataset,
        List<JsonElement> lines,
        double tolerance
    ) =>
        AssertSameAsPredictAsync(
            client,
            model,
            lines,
            line => client.GetByteArrayAsync($"/api/datasets/{dataset}/images/{line.GetProperty("imageId").GetGuid()}"),
            tolerance
        );

    private static async Task<double> AssertSameAsPredictAsync(
        HttpClient client,
        Guid model,
        List<JsonElement> lines,
        Func<JsonElement, Task<byte[]>> bytesOf,
        double tolerance
    )
    {
        var largest = 0.0;
        foreach (var line in lines)
        {
            var fileName = line.GetProperty("fileName").GetString();
            var bytes = await bytesOf(line);
            var single = await (
                await client.PostAsync($"/api/models/{model}/predict", Archives.ImageForm(bytes))
            ).ReadAsync<PredictResponse>();
            var batched = line.GetProperty("predictions").EnumerateArray().ToList();
            // The batch's top k are /predict's first k.
            Assert.Equal(
                single.Predictions.Take(batched.Count).Select(p => p.Label),
                batched.Select(p => p.GetProperty("label").GetString())
            );
            foreach (var (one, many) in single.Predictions.Zip(batched))
            {
                var difference = Math.Abs(one.Probability - many.GetProperty("probability").GetDouble());
                largest = Math.Max(largest, difference);
                Assert.True(difference <= tolerance, $"{fileName}: {one.Label} {one.Probability} against {many}");
            }
            Assert.Equal(single.Novelty is null, line.GetProperty("novelty").ValueKind == JsonValueKind.Null);
            if (single.Novelty is { } novelty)
            {
                Assert.Equal(novelty, line.GetProperty("novelty").GetDouble(), tolerance);
                Assert.Equal(single.Unknown, line.GetProperty("unknown").GetBoolean());
            }
        }
        return largest;
    }

    [Fact]
    public async Task A_batch_prediction_answers_for_every_image_what_predict_answers_and_announces_its_end()
    {
        var client = factory.CreateClient(await admin.CreateKeyAsync(KeyScope.Train, "bulk"));
        await using var receiver = await WebhookReceiver.StartAsync();
        var webhook = await (
            await client.PostAsJsonAsync(
                "/api/webhooks",
                new { url = receiver.Url, events = new[] { "batch-prediction.completed" } }
            )
        ).ReadAsync<TransferApi.Features.Webhooks.WebhookResponse>();
        // Photos in train/ and val/, and two without a label.
        var photos = Enumerable
            .Range(0, 5)
            .SelectMany(i =>
                new[]
                {
                    Archives.Photo("train", "ants", i, $"train/ants/{i}.jpg"),
                    Archives.Photo("train", "bees", i, $"train/bees/{i}.jpg"),
                }
            )
            .Concat(
                Enumerable
                    .Range(0, 2)
                    .SelectMany(i =>
                        new[]
                        {
                            Archives.Photo("val", "ants", i, $"val/ants/{i}.jpg"),
                            Archives.Photo("val", "bees", i, $"val/bees/{i}.jpg"),
                        }
                    )
            )
            .Append(Archives.Photo("val", "ants", 3, "unlabeled/a.jpg"))
            .Append(Archives.Photo("val", "bees", 3, "unlabeled/b.jpg"))
            .ToList();
        var dataset = await (
            await client.PostAsync("/api/datasets", Archives.DatasetForm("bulk", Archives.Zip(photos)))
        ).ReadAsync<DatasetResponse>();
        await client.ReadyHealthAsync(dataset.Id);
        var job = await TrainAsync(
            client,
            new
            {
                datasetId = dataset.Id,
                epochs = 3,
                tuning = new { mode = "Off" },
            }
        );
        var model = job.ModelId!.Value;

        var request = new HttpRequestMessage(HttpMethod.Post, $"/api/models/{model}/batch-predictions")
        {
            Content = JsonContent.Create(new { datasetId = dataset.Id, topK = 2 }),
        };
        request.Headers.Add("Idempotency-Key", Guid.NewGuid().ToString());
        var accepted = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        var batch = await WaitForBatchAsync(client, await accepted.ReadAsync<BatchPredictionResponse>());
        Assert.True(batch.Status == JobStatus.Succeeded, batch.Error);
        Assert.Equal((photos.Count, photos.Count), (batch.ImagesTotal, batch.ImagesDone));
        // The job and the health report embedded every photo: no backbone pass.
        Assert.Equal(photos.Count, batch.ImagesFromCache);

        var lines = await ResultLinesAsync(client, batch);
        Assert.Equal(photos.Count, lines.Count);
        Assert.Equal(2, lines.Count(l => l.GetProperty("split").GetString() == "Unlabeled"));
        Assert.All(lines, l => Assert.Equal(2, l.GetProperty("predictions").GetArrayLength()));
        var largest = await AssertSameAsPredictAsync(client, model, dataset.Id, lines, 1e-4);
        output.WriteLine($"frozen model: largest probability difference against /predict {largest:E2}");

        var csv = (await client.GetStringAsync($"{batch.Results}?format=csv")).Split(
            '\n',
            StringSplitOptions.RemoveEmptyEntries
        );
        Assert.Equal("imageId,fileName,label,split,predicted,probability,novelty,unknown,predictions", csv[0]);
        Assert.Equal(photos.Count + 1, csv.Length);
        Assert.StartsWith($"{lines[0].GetProperty("imageId").GetGuid()},", csv[1], StringComparison.Ordinal);
        Assert.Contains(
            $",{lines[0].GetProperty("predictions")[0].GetProperty("label").GetString()},",
            csv[1],
            StringComparison.Ordinal
        );

        var announced = (await receiver.WaitForAsync(1))[0];
        Assert.True(WebhookReceiver.SignatureIsValid(announced, webhook.Secret!));
        var data = announced.Json.GetProperty("data");
        Assert.Equal(batch.Id, data.GetProperty("batchId").GetGuid());
        Assert.Equal("Succeeded", data.GetProperty("status").GetString());
        Assert.Equal(photos.Count, data.GetProperty("images").GetInt32());

        // One split only; and a fine-tuned model runs its whole network, with the same agreement.
        var unlabeled = await WaitForBatchAsync(
            client,
            await (
                await client.PostAsJsonAsync(
                    $"/api/models/{model}/batch-predictions",
                    new { datasetId = dataset.Id, split = "unlabeled" }
                )
            ).ReadAsync<BatchPredictionResponse>()
        );
        Assert.Equal((JobStatus.Succeeded, 2), (unlabeled.Status, unlabeled.ImagesTotal));
        var tuned = await TrainAsync(
            client,
            new
            {
                datasetId = dataset.Id,
                epochs = 2,
                unfreezeStages = 1,
                fineTuneEpochs = 1,
                tuning = new { mode = "Off" },
            },
            seconds: 300
        );
        var fineTuned = await WaitForBatchAsync(
            client,
            await (
                await client.PostAsJsonAsync(
                    $"/api/models/{tuned.ModelId}/batch-predictions",
                    new { datasetId = dataset.Id, split = "validation" }
                )
            ).ReadAsync<BatchPredictionResponse>()
        );
        Assert.True(fineTuned.Status == JobStatus.Succeeded, fineTuned.Error);
        Assert.Equal((4, 0), (fineTuned.ImagesTotal, fineTuned.ImagesFromCache));
        var tunedLargest = await AssertSameAsPredictAsync(
            client,
            tuned.ModelId!.Value,
            dataset.Id,
            await ResultLinesAsync(client, fineTuned),
            1e-4
        );
        output.WriteLine($"fine-tuned model: largest probability difference against /predict {tunedLargest:E2}");
    }

    [Fact]
    public async Task Bad_batch_predictions_are_refused_naming_the_field_and_ended_ones_cannot_be_cancelled()
    {
        var client = factory.CreateClient(await admin.CreateKeyAsync(KeyScope.Train, "bulk-refused"));
        var other = factory.CreateClient(await admin.CreateKeyAsync(KeyScope.Train, "bulk-other"));
        var dataset = await (
            await client.PostAsync(
                "/api/datasets",
                Archives.DatasetForm("bulk refused", Archives.Zip(Archives.TwoClasses(2)))
            )
        ).ReadAsync<DatasetResponse>();
        var othersDataset = await (
            await other.PostAsync(
                "/api/datasets",
                Archives.DatasetForm("not yours", Archives.Zip(Archives.TwoClasses(2)))
            )
        ).ReadAsync<DatasetResponse>();
        var job = await TrainAsync(client, new { datasetId = dataset.Id, epochs = 1 });
        var route = $"/api/models/{job.ModelId}/batch-predictions";

        async Task<JsonElement> RefusedAsync(object body, string field)
        {
            var response = await client.PostAsJsonAsync(route, body);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            var problem = await response.ProblemAsync();
            Assert.True(problem.GetProperty("errors").TryGetProperty(field, out var message), field);
            return message;
        }
        await RefusedAsync(new { split = "all" }, "datasetId");
        await RefusedAsync(new { datasetId = othersDataset.Id }, "datasetId");
        Assert.Contains(
            "'everything'",
            (await RefusedAsync(new { datasetId = dataset.Id, split = "everything" }, "split"))[0].GetString()
        );
        await RefusedAsync(new { datasetId = dataset.Id, topK = 0 }, "topK");
        Assert.Equal(
            HttpStatusCode.NotFound,
            (
                await client.PostAsJsonAsync(
                    $"/api/models/{Guid.NewGuid()}/batch-predictions",
                    new { datasetId = dataset.Id }
                )
            ).StatusCode
        );
        var predictOnly = factory.CreateClient(await admin.CreateKeyAsync(KeyScope.Predict, "bulk-refused"));
        Assert.Equal(
            HttpStatusCode.Forbidden,
            (await predictOnly.PostAsJsonAsync(route, new { datasetId = dataset.Id })).StatusCode
        );

        // A zip instead of a data set: each refusal names the part at fault.
        async Task<JsonElement> FormRefusedAsync(HttpContent body, HttpStatusCode status)
        {
            var response = await client.PostAsync(route, body);
            Assert.Equal(status, response.StatusCode);
            return await response.ProblemAsync();
        }
        var onePhoto = Archives.Zip([Archives.Photo("train", "ants", 0)]);
        Assert.True(
            (
                await FormRefusedAsync(
                    Archives.ZipForm(onePhoto, fields: ("datasetId", dataset.Id.ToString())),
                    HttpStatusCode.BadRequest
                )
            )
                .GetProperty("errors")
                .TryGetProperty("datasetId", out _)
        );
        Assert.True(
            (
                await FormRefusedAsync(
                    new MultipartFormDataContent { { new StringContent("3"), "topK" } },
                    HttpStatusCode.BadRequest
                )
            )
                .GetProperty("errors")
                .TryGetProperty("file", out _)
        );
        Assert.Contains(
            "'many'",
            (await FormRefusedAsync(Archives.ZipForm(onePhoto, fields: ("topK", "many")), HttpStatusCode.BadRequest))
                .GetProperty("errors")
                .GetProperty("topK")[0]
                .GetString(),
            StringComparison.Ordinal
        );
        Assert.StartsWith(
            "file:",
            (await FormRefusedAsync(Archives.ZipForm("plain text"u8.ToArray()), HttpStatusCode.BadRequest))
                .GetProperty("detail")
                .GetString(),
            StringComparison.Ordinal
        );
        var noImages = await FormRefusedAsync(
            Archives.ZipForm(Archives.Zip([("readme.txt", "hello"u8.ToArray()), ("data.csv", "a,b"u8.ToArray())])),
            HttpStatusCode.UnprocessableEntity
        );
        Assert.Contains("'readme.txt'", noImages.GetProperty("detail").GetString(), StringComparison.Ordinal);
        await FormRefusedAsync(new StringContent("datasetId please"), HttpStatusCode.UnsupportedMediaType);
        await FormRefusedAsync(
            new StringContent("{\"datasetId\":", System.Text.Encoding.UTF8, "application/json"),
            HttpStatusCode.BadRequest
        );
        Assert.Equal(
            0,
            await factory.QueryAsync(db =>
                Microsoft.EntityFrameworkCore.EntityFrameworkQueryableExtensions.CountAsync(db.BatchPredictions, b =>
                    b.ModelId == job.ModelId
                )
            )
        );

        var batch = await WaitForBatchAsync(
            client,
            await (
                await client.PostAsJsonAsync(route, new { datasetId = dataset.Id })
            ).ReadAsync<BatchPredictionResponse>()
        );
        Assert.Equal(JobStatus.Succeeded, batch.Status);
        Assert.Equal(HttpStatusCode.Conflict, (await client.PostAsync($"{route}/{batch.Id}/cancel", null)).StatusCode);
        var badFormat = await client.GetAsync($"{batch.Results}?format=xml");
        Assert.Equal(HttpStatusCode.BadRequest, badFormat.StatusCode);
        await badFormat.ProblemAsync();
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"{route}/{Guid.NewGuid()}")).StatusCode);
        var listed = await (await client.GetAsync(route)).ReadAsync<TransferApi.Http.Page<BatchPredictionResponse>>();
        Assert.Equal(batch.Id, Assert.Single(listed.Items).Id);
    }

    private static async Task<TrainingJobResponse> TrainAsync(HttpClient client, object request, int seconds = 120)
    {
        var started = await (
            await client.PostAsJsonAsync("/api/training-jobs", request)
        ).ReadAsync<TrainingJobResponse>();
        var job = await client.WaitForJobAsync(started.Id, JobPolling.Ended, seconds: seconds);
        Assert.True(job.Status == JobStatus.Succeeded, job.Error);
        return job;
    }

    private static async Task<(Guid Model, Guid Dataset)> TrainFrozenModelAsync(HttpClient client, string name)
    {
        var dataset = await (
            await client.PostAsync("/api/datasets", Archives.DatasetForm(name, Archives.Zip(Archives.TwoClasses(3))))
        ).ReadAsync<DatasetResponse>();
        var job = await TrainAsync(
            client,
            new
            {
                datasetId = dataset.Id,
                epochs = 2,
                tuning = new { mode = "Off" },
            }
        );
        return (job.ModelId!.Value, dataset.Id);
    }

    private Task<int> UploadedImagesKeptAsync(Guid batchId) =>
        factory.QueryAsync(db =>
            Microsoft.EntityFrameworkCore.EntityFrameworkQueryableExtensions.CountAsync(db.BatchPredictionImages, i =>
                i.BatchId == batchId
            )
        );

    [Fact]
    public async Task A_zip_of_images_is_scored_naming_each_by_its_path_and_its_images_are_not_kept()
    {
        var client = factory.CreateClient(await admin.CreateKeyAsync(KeyScope.Train, "bulk-zip"));
        var (model, _) = await TrainFrozenModelAsync(client, "bulk zip");
        // Folders only name the images; a file that is not an image is listed, operating-system junk is skipped.
        // The noise image is new to every run, so the first batch must run the backbone for it.
        List<(string Entry, byte[] Data)> files =
        [
            ("field trip/ants 1.jpg", Archives.Photo("val", "ants", 0).Item2),
            ("field trip/day 2/bee.jpg", Archives.Photo("val", "bees", 0).Item2),
            ("loose.jpg", Archives.Photo("val", "ants", 1).Item2),
            ("notes.txt", "not an image"u8.ToArray()),
            ("noise.png", Archives.NoisePng(64, 48, Random.Shared.Next())),
            (".DS_Store", [0, 0, 0, 1]),
        ];
        var zip = Archives.Zip(files);
        var scored = files.Where(f => f.Entry is not ("notes.txt" or ".DS_Store")).ToList();
        var route = $"/api/models/{model}/batch-predictions";

        var accepted = await client.PostAsync(route, Archives.ZipForm(zip, "field photos.zip", ("topK", "1")));
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        var created = await accepted.ReadAsync<BatchPredictionResponse>();
        Assert.Null(created.DatasetId);
        Assert.Equal("field photos.zip", created.ArchiveName);
        Assert.Equal(scored.Count, created.ImagesTotal);
        Assert.Equal("notes.txt", Assert.Single(created.Rejected).Entry);
        var first = await WaitForBatchAsync(client, created);
        Assert.True(first.Status == JobStatus.Succeeded, first.Error);
        Assert.True(first.ImagesFromCache < scored.Count, $"{first.ImagesFromCache} from cache");
        Assert.Equal(0, await UploadedImagesKeptAsync(first.Id));

        var lines = await ResultLinesAsync(client, first);
        Assert.Equal(scored.Select(f => f.Entry), lines.Select(l => l.GetProperty("fileName").GetString()));
        Assert.All(lines, l =>
        {
            Assert.Equal(JsonValueKind.Null, l.GetProperty("imageId").ValueKind);
            Assert.Equal(JsonValueKind.Null, l.GetProperty("split").ValueKind);
            Assert.Equal(1, l.GetProperty("predictions").GetArrayLength());
        });
        var bytesOf = scored.ToDictionary(f => f.Entry, f => f.Data);
        var largest = await AssertSameAsPredictAsync(
            client,
            model,
            lines,
            line => Task.FromResult(bytesOf[line.GetProperty("fileName").GetString()!]),
            1e-4
        );
        output.WriteLine($"uploaded zip: largest probability difference against /predict {largest:E2}");
        var csv = await client.GetStringAsync($"{first.Results}?format=csv");
        // An uploaded image has no id, label or split: its line starts with its path.
        Assert.Contains(csv.Split('\n'), l => l.StartsWith(",field trip/day 2/bee.jpg,,,", StringComparison.Ordinal));

        // The first batch cached every image's features: scoring the same zip again needs no backbone pass.
        var again = await WaitForBatchAsync(
            client,
            await (await client.PostAsync(route, Archives.ZipForm(zip))).ReadAsync<BatchPredictionResponse>()
        );
        Assert.Equal((JobStatus.Succeeded, scored.Count), (again.Status, again.ImagesFromCache));
    }

    [Fact]
    public async Task Cancelled_batches_stop_queued_or_running_keep_neither_results_nor_images_and_are_announced()
    {
        var client = factory.CreateClient(await admin.CreateKeyAsync(KeyScope.Train, "bulk-cancel"));
        var (model, dataset) = await TrainFrozenModelAsync(client, "bulk cancel");
        await using var receiver = await WebhookReceiver.StartAsync();
        await client.PostAsJsonAsync(
            "/api/webhooks",
            new { url = receiver.Url, events = new[] { "batch-prediction.completed" } }
        );
        // Images no run has embedded: the backbone runs for each, long enough to cancel midway.
        var seed = Random.Shared.Next();
        var zip = Archives.Zip(Enumerable.Range(0, 300).Select(i => ($"{i}.png", Archives.NoisePng(96, 96, seed + i))));
        var batch = await (
            await client.PostAsync($"/api/models/{model}/batch-predictions", Archives.ZipForm(zip))
        ).ReadAsync<BatchPredictionResponse>();
        var route = $"/api/models/{model}/batch-predictions/{batch.Id}";
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (batch.Status == JobStatus.Queued && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
            batch = await (await client.GetAsync(route)).ReadAsync<BatchPredictionResponse>();
        }
        Assert.Equal(JobStatus.Running, batch.Status);

        // The scoring worker is busy: a second batch waits, and a cancel ends it at once.
        var waiting = await (
            await client.PostAsync(
                $"/api/models/{model}/batch-predictions",
                Archives.ZipForm(Archives.Zip([Archives.Photo("val", "ants", 0)]))
            )
        ).ReadAsync<BatchPredictionResponse>();
        var waitingCancel = await client.PostAsync($"/api/models/{model}/batch-predictions/{waiting.Id}/cancel", null);
        Assert.Equal(HttpStatusCode.Accepted, waitingCancel.StatusCode);
        Assert.Equal(JobStatus.Cancelled, (await waitingCancel.ReadAsync<BatchPredictionResponse>()).Status);
        Assert.Equal(0, await UploadedImagesKeptAsync(waiting.Id));

        var cancel = await client.PostAsync($"{route}/cancel", null);
        Assert.Equal(HttpStatusCode.Accepted, cancel.StatusCode);
        var ended = await WaitForBatchAsync(client, batch);
        output.WriteLine($"cancelled after {ended.ImagesDone} of {ended.ImagesTotal} images");
        Assert.Equal(JobStatus.Cancelled, ended.Status);
        Assert.True(ended.ImagesDone < ended.ImagesTotal, $"{ended.ImagesDone} of {ended.ImagesTotal}");
        var announced = (await receiver.WaitForAsync(2)).Select(d => d.Json.GetProperty("data")).ToList();
        Assert.Equal(
            new[] { (waiting.Id, "Cancelled"), (batch.Id, "Cancelled") },
            announced.Select(d => (d.GetProperty("batchId").GetGuid(), d.GetProperty("status").GetString()!))
        );
        Assert.Equal(HttpStatusCode.Conflict, (await client.GetAsync(ended.Results)).StatusCode);
        Assert.Equal(0, await UploadedImagesKeptAsync(batch.Id));
        Assert.Equal(
            0,
            await factory.QueryAsync(db =>
                Microsoft.EntityFrameworkCore.EntityFrameworkQueryableExtensions.CountAsync(
                    db.BatchPredictionResults,
                    r => r.BatchId == batch.Id
                )
            )
        );
        Assert.Equal(HttpStatusCode.Conflict, (await client.PostAsync($"{route}/cancel", null)).StatusCode);

        // A batch whose queueing was lost (committed, never handed to Hangfire) is queued again by the sweep.
        var lost = new BatchPrediction
        {
            Id = Guid.CreateVersion7(),
            ModelId = model,
            DatasetId = dataset,
            TopK = 1,
            Status = JobStatus.Queued,
            CreatedAt = DateTime.UtcNow.AddMinutes(-2),
        };
        await factory.QueryAsync(async db =>
        {
            lost.Tenant = await Microsoft.EntityFrameworkCore.EntityFrameworkQueryableExtensions.SingleAsync(
                db.Models.Where(m => m.Id == model).Select(m => m.Tenant)
            );
            db.BatchPredictions.Add(lost);
            return await db.SaveChangesAsync();
        });
        var sweep = factory
            .Services.GetServices<Microsoft.Extensions.Hosting.IHostedService>()
            .OfType<TransferApi.Jobs.BatchPredictionSweepService>()
            .Single();
        Assert.Equal(1, await sweep.RequeueLostAsync(CancellationToken.None));
        var found = await (
            await client.GetAsync($"/api/models/{model}/batch-predictions/{lost.Id}")
        ).ReadAsync<BatchPredictionResponse>();
        var swept = await WaitForBatchAsync(client, found);
        Assert.Equal((JobStatus.Succeeded, 6), (swept.Status, swept.ImagesTotal));
        Assert.Equal(0, await sweep.RequeueLostAsync(CancellationToken.None));
    }
}
