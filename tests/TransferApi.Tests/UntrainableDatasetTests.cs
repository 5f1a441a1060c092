using System.Net;
using System.Net.Http.Json;
using TransferApi.Features.Datasets;

namespace TransferApi.Tests;

[Collection(ServiceCollection.Name)]
public class UntrainableDatasetTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    [Fact]
    public async Task A_data_set_with_only_test_images_says_why_and_no_job_starts()
    {
        var entries = new[] { "ants", "bees" }.SelectMany(label =>
            TestData
                .AntsBeesImages("val", label, 2)
                .Select(path => ($"test/{label}/{Path.GetFileName(path)}", File.ReadAllBytes(path)))
        );
        var dataset = await (
            await client.PostAsync("/api/datasets", Archives.DatasetForm("test split only", Archives.Zip(entries)))
        ).ReadAsync<DatasetResponse>();
        Assert.False(dataset.Trainable);
        Assert.Contains(dataset.Problems, p => p.Contains("'ants' has no training images"));

        var jobsBefore = await factory.QueryAsync(db => Task.FromResult(db.TrainingJobs.Count()));
        var start = await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, start.StatusCode);
        Assert.StartsWith("datasetId:", (await start.ProblemAsync()).GetProperty("detail").GetString());
        Assert.Equal(jobsBefore, await factory.QueryAsync(db => Task.FromResult(db.TrainingJobs.Count())));
    }

    [Fact]
    public async Task A_class_below_the_minimum_makes_the_data_set_untrainable()
    {
        var entries = Archives
            .TwoClasses(3)
            .Where(e =>
                !e.Item1.StartsWith("bees/1", StringComparison.Ordinal)
                && !e.Item1.StartsWith("bees/2", StringComparison.Ordinal)
            );
        var dataset = await (
            await client.PostAsync("/api/datasets", Archives.DatasetForm("tiny class", Archives.Zip(entries)))
        ).ReadAsync<DatasetResponse>();
        Assert.Equal([("ants", 3), ("bees", 1)], dataset.Classes.Select(c => (c.Name, c.ImageCount)));
        Assert.False(dataset.Trainable);
        Assert.Contains(dataset.Problems, p => p.Contains("class 'bees' has 1 image(s); at least 2"));
        Assert.Equal(3.0, dataset.ImbalanceRatio);
    }
}
