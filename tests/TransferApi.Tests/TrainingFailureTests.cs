using System.Net;
using System.Net.Http.Json;
using TransferApi.Features.Datasets;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;
using TransferApi.TestSupport;

namespace TransferApi.Tests;

[Collection(ServiceCollection.Name)]
public class TrainingFailureTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    [Fact]
    public async Task A_data_set_with_only_test_images_ends_Failed_with_a_readable_error()
    {
        var entries = new[] { "ants", "bees" }.SelectMany(label =>
            TestData.AntsBeesImages("val", label, 2).Select(path => ($"test/{label}/{Path.GetFileName(path)}", File.ReadAllBytes(path))));
        var dataset = await (await client.PostAsync("/api/datasets", Archives.DatasetForm("test split only", Archives.Zip(entries)))).ReadAsync<DatasetResponse>();

        var start = await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id });
        Assert.Equal(HttpStatusCode.Accepted, start.StatusCode);
        var job = await start.ReadAsync<TrainingJobResponse>();
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (job.Status is JobStatus.Queued or JobStatus.Running && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
            job = await (await client.GetAsync($"/api/training-jobs/{job.Id}")).ReadAsync<TrainingJobResponse>();
        }

        Assert.Equal(JobStatus.Failed, job.Status);
        Assert.Contains("at least 2 classes", job.Error);
        Assert.Null(job.ModelId);
        Assert.NotNull(job.FinishedAt);
    }
}
