using System.Net;
using System.Net.Http.Json;
using TransferApi.Features.Models;
using TransferApi.Features.TrainingJobs;
using TransferApi.Http;
using TransferApi.Persistence;
using TransferApi.Training.Evaluation;

namespace TransferApi.Tests;

/// <summary>Issue 16's comparison through HTTP: two models of one data set side by side on their shared evaluated
/// images, checked against each job's own report.</summary>
[Collection(ServiceCollection.Name)]
public class ModelComparisonTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    private async Task<TrainingJobResponse> TrainAsync(object options)
    {
        var job = await (await client.PostAsJsonAsync("/api/training-jobs", options)).ReadAsync<TrainingJobResponse>();
        var done = await client.WaitForJobAsync(job.Id, JobPolling.Ended);
        Assert.Equal(JobStatus.Succeeded, done.Status);
        return done;
    }

    private async Task<Dictionary<Guid, EvaluatedImageResponse>> EvaluatedAsync(Guid jobId) =>
        (
            await (
                await client.GetAsync($"/api/training-jobs/{jobId}/report/images?outcome=all&pageSize=200")
            ).ReadAsync<Page<EvaluatedImageResponse>>()
        ).Items.ToDictionary(i => i.ImageId);

    [Fact]
    public async Task Two_models_of_one_data_set_are_compared_on_their_shared_images_with_mcnemars_test()
    {
        var dataset = await client.UploadDatasetAsync("compare", Archives.TwoClasses(20));
        var weak = await TrainAsync(
            new
            {
                datasetId = dataset.Id,
                epochs = 1,
                learningRate = 0.00005,
            }
        );
        var strong = await TrainAsync(
            new
            {
                datasetId = dataset.Id,
                epochs = 10,
                modelName = "compare-strong",
            }
        );

        var response = await client.GetAsync($"/api/models/compare?ids={weak.ModelId},compare-strong");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var comparison = await response.ReadAsync<ModelComparisonResponse>();

        var first = await EvaluatedAsync(weak.Id);
        var second = await EvaluatedAsync(strong.Id);
        Assert.Equal(first.Count, comparison.SharedImages);
        Assert.Equal([weak.ModelId!.Value, strong.ModelId!.Value], comparison.Models.Select(m => m.ModelId));
        foreach (var (model, images) in comparison.Models.Zip([first, second]))
        {
            Assert.Equal(Math.Round(images.Values.Count(i => i.Correct) / (double)images.Count, 4), model.Accuracy);
            Assert.Equal(Math.Round(images.Values.Average(i => i.Loss), 4), model.LogLoss, 3);
        }
        var pair = Assert.Single(comparison.Pairs);
        var onlyFirst = first.Keys.Count(id => first[id].Correct && !second[id].Correct);
        var onlySecond = first.Keys.Count(id => !first[id].Correct && second[id].Correct);
        Assert.Equal((onlyFirst, onlySecond), (pair.OnlyFirstRight, pair.OnlySecondRight));
        Assert.Equal(McNemar.ExactPValue(onlyFirst, onlySecond), pair.PValue, 1e-12);
        Assert.Equal(pair.PValue < 0.05, pair.Significant);
        var disagree = first.Keys.Where(id => first[id].Predicted != second[id].Predicted).ToHashSet();
        Assert.Equal(disagree.Count, comparison.DisagreementCount);
        Assert.All(comparison.Disagreements, d =>
        {
            Assert.Contains(d.ImageId, disagree);
            Assert.Equal(
                [first[d.ImageId].Predicted, second[d.ImageId].Predicted],
                d.Predictions.Select(p => p.Predicted)
            );
        });
    }

    [Fact]
    public async Task Models_without_shared_images_and_bad_id_lists_are_refused_by_name()
    {
        var one = await TrainAsync(
            new { datasetId = (await client.UploadDatasetAsync("compare-a", Archives.TwoClasses(6))).Id, epochs = 1 }
        );
        var other = await TrainAsync(
            new
            {
                datasetId = (
                    await client.UploadDatasetAsync(
                        "compare-b",
                        Enumerable
                            .Range(6, 6)
                            .SelectMany(i =>
                                new[] { Archives.Photo("train", "ants", i), Archives.Photo("train", "bees", i) }
                            )
                    )
                ).Id,
                epochs = 1,
            }
        );
        async Task AssertProblemAsync(string ids, HttpStatusCode status)
        {
            var response = await client.GetAsync($"/api/models/compare?ids={ids}");
            Assert.Equal(status, response.StatusCode);
            Assert.Contains("ids", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        await AssertProblemAsync($"{one.ModelId},{other.ModelId}", HttpStatusCode.UnprocessableEntity);
        await AssertProblemAsync($"{one.ModelId}", HttpStatusCode.BadRequest);
        await AssertProblemAsync($"{one.ModelId},{one.ModelId}", HttpStatusCode.BadRequest);
        Assert.Equal(
            HttpStatusCode.NotFound,
            (await client.GetAsync($"/api/models/compare?ids={one.ModelId},{Guid.NewGuid()}")).StatusCode
        );
    }
}
