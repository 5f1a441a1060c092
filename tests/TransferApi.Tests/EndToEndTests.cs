using System.Net;
using System.Net.Http.Json;
using TransferApi.Features.Datasets;
using TransferApi.Features.Models;
using TransferApi.Features.TrainingJobs;
using TransferApi.Http;
using TransferApi.Persistence;
using Xunit.Abstractions;

namespace TransferApi.Tests;

[Collection(ServiceCollection.Name)]
public class EndToEndTests(TransferApiFactory factory, ITestOutputHelper output)
{
    private readonly HttpClient client = factory.CreateClient();
    private const int TrainImagesPerClass = 60;

    [Fact]
    public async Task Upload_train_and_predict_classifies_held_out_photos()
    {
        // 1. Upload a subset of ants-bees/train, one folder per class (photos other tests leave alone, so the
        //    backbone really runs rather than the feature cache answering).
        var entries = new[] { "ants", "bees" }.SelectMany(label =>
            TestData
                .AntsBeesImages("train", label)
                .Skip(TrainImagesPerClass)
                .Take(TrainImagesPerClass)
                .Select(path => ($"{label}/{Path.GetFileName(path)}", File.ReadAllBytes(path)))
        );
        var upload = await client.PostAsync(
            "/api/datasets",
            Archives.DatasetForm("ants-bees subset", Archives.Zip(entries))
        );
        Assert.Equal(HttpStatusCode.Created, upload.StatusCode);
        var dataset = await upload.ReadAsync<DatasetResponse>();
        Assert.Equal(2 * TrainImagesPerClass, dataset.ImageCount);

        // 2. Start a job and watch it run; metrics appear epoch by epoch.
        var start = await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 10 });
        Assert.Equal(HttpStatusCode.Accepted, start.StatusCode);
        var job = await start.ReadAsync<TrainingJobResponse>();
        Assert.Equal(JobStatus.Queued, job.Status);
        Assert.Equal($"/api/training-jobs/{job.Id}", start.Headers.Location?.OriginalString);

        var seen = new List<JobStatus> { job.Status };
        var deadline = DateTime.UtcNow.AddMinutes(5);
        while (job.Status is JobStatus.Queued or JobStatus.Running && DateTime.UtcNow < deadline)
        {
            await Task.Delay(250);
            job = await (await client.GetAsync($"/api/training-jobs/{job.Id}")).ReadAsync<TrainingJobResponse>();
            if (seen[^1] != job.Status)
                seen.Add(job.Status);
            Assert.True(job.Progress.Percent is >= 0 and <= 100);
        }
        Assert.True(job.Status == JobStatus.Succeeded, $"job ended {job.Status}: {job.Error}");
        Assert.Equal([JobStatus.Queued, JobStatus.Running, JobStatus.Succeeded], seen);
        Assert.Equal(Enumerable.Range(1, 10), job.Metrics.Select(m => m.Epoch));
        Assert.True(job.Metrics[^1].TrainLoss < job.Metrics[0].TrainLoss);
        Assert.Equal(100, job.Progress.Percent);
        Assert.NotNull(job.StartedAt);
        Assert.NotNull(job.FinishedAt);

        // 3. The model is listed and classifies val/ photos it never saw.
        var model = await (await client.GetAsync($"/api/models/{job.ModelId}")).ReadAsync<ModelResponse>();
        Assert.Equal(["ants", "bees"], model.Labels);
        Assert.Equal(job.Id, model.JobId);
        Assert.Equal("resnet18-imagenet", model.Backbone);

        var correct = 0;
        var total = 0;
        foreach (var label in new[] { "ants", "bees" })
        {
            foreach (var path in TestData.AntsBeesImages("val", label))
            {
                var predicted = await client.PostAsync(
                    $"/api/models/{model.Id}/predict?topK=2",
                    Archives.ImageForm(File.ReadAllBytes(path), Path.GetFileName(path))
                );
                Assert.Equal(HttpStatusCode.OK, predicted.StatusCode);
                var answer = await predicted.ReadAsync<PredictResponse>();
                Assert.Equal(2, answer.Predictions.Count);
                Assert.True(answer.Predictions[0].Probability >= answer.Predictions[1].Probability);
                Assert.Equal(1.0, answer.Predictions.Sum(p => p.Probability), 3);
                total++;
                if (answer.Predictions[0].Label == label)
                    correct++;
            }
        }
        var accuracy = correct / (double)total;
        output.WriteLine($"held-out val accuracy {correct}/{total} = {accuracy:P1}; last epoch {job.Metrics[^1]}");
        Assert.True(accuracy >= 0.85, $"held-out accuracy {accuracy:P1}");

        // The data set now backs a model: deleting it is refused.
        var delete = await client.DeleteAsync($"/api/datasets/{dataset.Id}");
        Assert.Equal(HttpStatusCode.Conflict, delete.StatusCode);
        await delete.ProblemAsync();

        var models = await (await client.GetAsync("/api/models")).ReadAsync<Page<ModelResponse>>();
        Assert.Contains(models.Items, m => m.Id == model.Id);
        var jobs = await (await client.GetAsync("/api/training-jobs?pageSize=50")).ReadAsync<
            Page<TrainingJobResponse>
        >();
        Assert.Contains(jobs.Items, j => j.Id == job.Id);
    }
}
