using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using TransferApi.Features.Datasets;
using TransferApi.Features.Models;
using TransferApi.Features.TrainingJobs;
using TransferApi.Http;
using TransferApi.Persistence;

namespace TransferApi.Tests;

/// <summary>Issue 14 through HTTP: calibration, novelty ("unknown"), thresholds from data and the images behind the
/// report, on a model of real ants and bees photos asked about real cats and dogs.</summary>
[Collection(ServiceCollection.Name)]
public class ModelTrustTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    /// <summary>Trains once per test class: 25 training and 16 validation photos per class (32 validation images,
    /// enough to calibrate and set the novelty threshold on them).</summary>
    private async Task<TrainingJobResponse> TrainAsync()
    {
        var entries = new[] { "ants", "bees" }
            .SelectMany(label =>
                Enumerable
                    .Range(0, 25)
                    .Select(i => Archives.Photo("train", label, i, $"train/{label}/{i}.jpg"))
                    .Concat(
                        Enumerable.Range(0, 16).Select(i => Archives.Photo("val", label, i, $"val/{label}/{i}.jpg"))
                    )
            )
            .ToList();
        var dataset = await (
            await client.PostAsync("/api/datasets", Archives.DatasetForm("trust", Archives.Zip(entries)))
        ).ReadAsync<DatasetResponse>();
        var job = await (
            await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 10 })
        ).ReadAsync<TrainingJobResponse>();
        var done = await client.WaitForJobAsync(job.Id, JobPolling.Ended);
        Assert.Equal(JobStatus.Succeeded, done.Status);
        return done;
    }

    private static List<(string Name, byte[] Data)> Pets(int perClass) =>
        new[] { "cats", "dogs" }
            .SelectMany(label =>
                Directory
                    .EnumerateFiles(Path.Combine(TestData.DatasetsRoot, "pets", label))
                    .Order(StringComparer.Ordinal)
                    .Take(perClass)
                    .Select(path => ($"{label}-{Path.GetFileName(path)}", File.ReadAllBytes(path)))
            )
            .ToList();

    /// <summary>Validation photos the model never saw (the data set holds the first 16 of each class).</summary>
    private static List<(string Name, byte[] Data)> UnseenBugs(int perClass) =>
        new[] { "ants", "bees" }
            .SelectMany(label =>
                Enumerable.Range(30, perClass).Select(i => Archives.Photo("val", label, i, $"{label}-{i}.jpg"))
            )
            .ToList();

    private static MultipartFormDataContent Form(IEnumerable<(string Name, byte[] Data)> images)
    {
        var form = new MultipartFormDataContent();
        foreach (var (name, data) in images)
        {
            var file = new ByteArrayContent(data);
            file.Headers.ContentType = new("image/jpeg");
            form.Add(file, "file", name);
        }
        return form;
    }

    private async Task<BatchPredictResponse> PredictManyAsync(
        Guid model,
        IEnumerable<(string, byte[])> images,
        string query
    )
    {
        var response = await client.PostAsync($"/api/models/{model}/predict{query}", Form(images));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.ReadAsync<BatchPredictResponse>();
    }

    [Fact]
    public async Task A_model_flags_what_it_never_saw_applies_its_own_thresholds_and_lists_its_mistakes()
    {
        var job = await TrainAsync();
        var modelId = job.ModelId!.Value;
        var model = await (await client.GetAsync($"/api/models/{modelId}")).ReadAsync<ModelResponse>();
        Assert.Equal(("validation", 32), (model.Calibration!.Method, model.Calibration.Images));
        Assert.True(
            model.Calibration.ExpectedCalibrationErrorAfter <= model.Calibration.ExpectedCalibrationErrorBefore + 1e-9
        );
        Assert.Equal(
            (true, "knn", "validation", (int?)32),
            (model.Novelty.Available, model.Novelty.Method, model.Novelty.Reference, model.Novelty.ReferenceImages)
        );
        Assert.Equal(["ants", "bees"], model.RecommendedThresholds!.Keys.Order());

        // Cats and dogs are stranger than unseen ants and bees, and most of them are flagged.
        var pets = await PredictManyAsync(modelId, Pets(4), "");
        var bugs = await PredictManyAsync(modelId, UnseenBugs(4), "");
        Assert.All(pets.Results.Concat(bugs.Results), r => Assert.NotNull(r.Novelty));
        Assert.True(
            pets.Results.Min(r => r.Novelty) > bugs.Results.Average(r => r.Novelty),
            $"pets {string.Join(", ", pets.Results.Select(r => r.Novelty))}; "
                + $"bugs {string.Join(", ", bugs.Results.Select(r => r.Novelty))}"
        );
        Assert.True(pets.Results.Count(r => r.Unknown == true) >= 6, "at least 6 of 8 pets flagged unknown");
        Assert.True(bugs.Results.Count(r => r.Unknown == true) <= 2, "at most 2 of 8 unseen bugs flagged unknown");
        // rejectUnknown empties exactly the unknown images' predictions.
        var rejected = await PredictManyAsync(modelId, Pets(4), "?rejectUnknown=true");
        Assert.Equal(pets.Results.Select(r => r.Unknown), rejected.Results.Select(r => r.Unknown));
        Assert.All(rejected.Results, r => Assert.Equal(r.Unknown == true, r.Predictions.Count == 0));
        // A single image carries the fields beside its predictions.
        var single = await client.PostAsync($"/api/models/{modelId}/predict", Archives.ImageForm(Pets(1)[0].Data));
        var singleJson = JsonDocument.Parse(await single.Content.ReadAsStringAsync()).RootElement;
        Assert.True(singleJson.GetProperty("unknown").GetBoolean());
        Assert.True(singleJson.GetProperty("novelty").GetDouble() > 0);

        // threshold=auto keeps exactly the labels at or above their own recommended threshold.
        var all = await PredictManyAsync(modelId, UnseenBugs(6), "?topK=2");
        var auto = await PredictManyAsync(modelId, UnseenBugs(6), "?topK=2&threshold=auto");
        var recommended = model.RecommendedThresholds!;
        Assert.Equal(
            all.Results.Select(r =>
                string.Join(",", r.Predictions.Where(p => p.Probability >= recommended[p.Label]).Select(p => p.Label))
            ),
            auto.Results.Select(r => string.Join(",", r.Predictions.Select(p => p.Label)))
        );

        // The report: thresholds per class, and every image behind the confusion matrix.
        var report = await (
            await client.GetAsync($"/api/training-jobs/{job.Id}/report")
        ).ReadAsync<ClassificationReportResponse>();
        Assert.Equal("validation", report.ThresholdsSplit);
        Assert.Equal(["ants", "bees"], report.Thresholds.Select(t => t.Label));
        Assert.All(report.Thresholds, t => Assert.Equal(101, t.Curve.Count));
        Assert.Equal(recommended["bees"], report.Thresholds[1].Recommended, 1e-12);
        var counts = report.ConfusionMatrix.Counts;
        var offDiagonal = counts[0][1] + counts[1][0];
        var mistakes = await (
            await client.GetAsync($"/api/training-jobs/{job.Id}/report/images?outcome=misclassified&pageSize=200")
        ).ReadAsync<Page<EvaluatedImageResponse>>();
        Assert.Equal(offDiagonal, mistakes.TotalCount);
        Assert.All(mistakes.Items, m => Assert.NotEqual(m.Label, m.Predicted));
        var everything = await (
            await client.GetAsync($"/api/training-jobs/{job.Id}/report/images?pageSize=200")
        ).ReadAsync<Page<EvaluatedImageResponse>>();
        Assert.Equal(report.Images, everything.TotalCount);
        Assert.Equal(everything.Items.Select(i => i.Loss).OrderDescending(), everything.Items.Select(i => i.Loss));
        foreach (var cell in report.ConfusionMatrix.Cells)
        {
            var listed = await (await client.GetAsync(cell.Images)).ReadAsync<Page<EvaluatedImageResponse>>();
            Assert.Equal(cell.Count, listed.TotalCount);
            Assert.All(listed.Items, i => Assert.Equal((cell.Label, cell.Predicted), (i.Label, i.Predicted)));
        }
        foreach (var chart in new[] { "reliability", "precision-recall", "top-losses" })
        {
            var png = await client.GetAsync($"/api/training-jobs/{job.Id}/charts/{chart}.png");
            Assert.Equal(HttpStatusCode.OK, png.StatusCode);
            Assert.Equal("image/png", png.Content.Headers.ContentType!.MediaType);
            Assert.True((await png.Content.ReadAsByteArrayAsync()).Length > 10_000, $"{chart} is not a drawn chart");
        }
        var tooMany = await client.GetAsync($"/api/training-jobs/{job.Id}/charts/top-losses.png?count=65");
        Assert.Equal(HttpStatusCode.BadRequest, tooMany.StatusCode);
        Assert.StartsWith("count:", (await tooMany.ProblemAsync()).GetProperty("detail").GetString());
        var worst = everything.Items[0];
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(worst.Thumbnail)).StatusCode);
        Assert.Equal(
            -Math.Log(worst.Label == worst.Predicted ? worst.Probability : 1 - worst.Probability),
            worst.Loss,
            1e-4
        );
    }

    [Theory]
    [InlineData("threshold=1.5", "threshold")]
    [InlineData("threshold=often", "threshold")]
    public async Task Bad_predict_thresholds_are_named(string query, string parameter)
    {
        var job = await TrainSmallAsync();
        var response = await client.PostAsync(
            $"/api/models/{job.ModelId}/predict?{query}",
            Archives.ImageForm(Archives.Photo("val", "ants", 0).Item2)
        );
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.StartsWith($"{parameter}:", (await response.ProblemAsync()).GetProperty("detail").GetString());
    }

    [Theory]
    [InlineData("outcome=wrong", "outcome")]
    [InlineData("label=cats", "label")]
    [InlineData("predicted=cats", "predicted")]
    [InlineData("page=0", "page")]
    [InlineData("page=99", "page")]
    [InlineData("pageSize=500", "pageSize")]
    public async Task Bad_report_image_filters_are_named(string query, string parameter)
    {
        var job = await TrainSmallAsync();
        var response = await client.GetAsync($"/api/training-jobs/{job.Id}/report/images?{query}");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.StartsWith($"{parameter}:", (await response.ProblemAsync()).GetProperty("detail").GetString());
    }

    private static TrainingJobResponse? small;
    private static readonly SemaphoreSlim SmallLock = new(1, 1);

    /// <summary>One small model shared by the bad-input cases (4 photos per class, split 0.5).</summary>
    private async Task<TrainingJobResponse> TrainSmallAsync()
    {
        await SmallLock.WaitAsync();
        try
        {
            if (small is not null)
                return small;
            var dataset = await (
                await client.PostAsync(
                    "/api/datasets",
                    Archives.DatasetForm("trust-small", Archives.Zip(Archives.TwoClasses(4)))
                )
            ).ReadAsync<DatasetResponse>();
            var job = await (
                await client.PostAsJsonAsync(
                    "/api/training-jobs",
                    new
                    {
                        datasetId = dataset.Id,
                        epochs = 3,
                        validationFraction = 0.5,
                    }
                )
            ).ReadAsync<TrainingJobResponse>();
            small = await client.WaitForJobAsync(job.Id, JobPolling.Ended);
            Assert.Equal(JobStatus.Succeeded, small.Status);
            return small;
        }
        finally
        {
            SmallLock.Release();
        }
    }

    [Fact]
    public async Task A_model_stored_before_calibration_and_novelty_still_predicts_and_says_why()
    {
        var job = await TrainSmallAsync();
        // A copy of the model with the shape rows had before issue 14: no calibration, novelty or thresholds.
        var oldId = Guid.CreateVersion7();
        await factory.QueryAsync(async db =>
        {
            var row = await db.Models.AsNoTracking().SingleAsync(m => m.Id == job.ModelId);
            var jobCopy = await db.TrainingJobs.AsNoTracking().SingleAsync(j => j.Id == job.Id);
            jobCopy.Id = Guid.CreateVersion7();
            jobCopy.ModelId = null;
            jobCopy.Metrics = [];
            db.TrainingJobs.Add(jobCopy);
            row.Id = oldId;
            row.JobId = jobCopy.Id;
            row.Name = null;
            row.Version = null;
            row.Aliases = [];
            row.Calibration = null;
            row.Novelty = null;
            row.NoveltyBank = null;
            row.Thresholds = null;
            db.Models.Add(row);
            return await db.SaveChangesAsync();
        });
        var model = await (await client.GetAsync($"/api/models/{oldId}")).ReadAsync<ModelResponse>();
        Assert.Null(model.Calibration);
        Assert.False(model.Novelty.Available);
        Assert.Contains("retrain", model.Novelty.Reason);
        var response = await client.PostAsync(
            $"/api/models/{oldId}/predict",
            Archives.ImageForm(Archives.Photo("val", "ants", 0).Item2)
        );
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(2, json.GetProperty("predictions").GetArrayLength());
        Assert.False(json.TryGetProperty("unknown", out _));
        Assert.False(json.TryGetProperty("novelty", out _));
        var auto = await client.PostAsync(
            $"/api/models/{oldId}/predict?threshold=auto",
            Archives.ImageForm(Archives.Photo("val", "ants", 0).Item2)
        );
        Assert.Equal(HttpStatusCode.Conflict, auto.StatusCode);
        Assert.StartsWith("threshold:", (await auto.ProblemAsync()).GetProperty("detail").GetString());
    }
}
