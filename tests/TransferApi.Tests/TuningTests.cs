using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;
using TransferApi.Training;

namespace TransferApi.Tests;

/// <summary>Issue 16 through HTTP (first part): a job asked to tune searches its head's recipe and shows the
/// search; bad tuning options are refused by name.</summary>
[Collection(ServiceCollection.Name)]
public class TuningTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    [Fact]
    public async Task A_job_asked_to_tune_trains_the_recipe_cross_validation_chose_and_shows_the_search()
    {
        var dataset = await client.UploadDatasetAsync("tuning", Archives.TwoClasses(12));
        var accepted = await client.PostAsJsonAsync(
            "/api/training-jobs",
            new
            {
                datasetId = dataset.Id,
                tuning = new
                {
                    mode = "Auto",
                    budgetSeconds = 60,
                    folds = 3,
                    metric = "Accuracy",
                },
            }
        );
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        var job = await accepted.ReadAsync<TrainingJobResponse>();
        Assert.Equal(new TuningOptionsResponse(60, 3, Training.Tuning.TuningMetric.Accuracy), job.Options.Tuning);
        var done = await client.WaitForJobAsync(job.Id, JobPolling.Ended, seconds: 240);
        Assert.Equal(JobStatus.Succeeded, done.Status);

        var search = done.Tuning!;
        Assert.Equal((3, Training.Tuning.TuningMetric.Accuracy), (search.Folds, search.Metric));
        Assert.True(search.Candidates.Count > 5, $"{search.Candidates.Count} candidates");
        // The first candidate is the request's own recipe; the chosen one has the best cross-validated accuracy.
        Assert.Equal(
            (HeadKind.Linear, 0.001, 10),
            (
                search.Candidates[0].Settings.Head,
                search.Candidates[0].Settings.LearningRate,
                search.Candidates[0].Settings.Epochs
            )
        );
        Assert.Equal(search.Candidates.Max(c => c.CvScore), search.Candidates[search.ChosenIndex].CvScore);
        Assert.Equal(search.Candidates[search.ChosenIndex].Settings, search.Chosen);
        // The model trained the chosen recipe: as many epochs of metrics as it says.
        Assert.Equal(search.Chosen.Epochs, done.Metrics.Count);

        var untuned = await (
            await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 2 })
        ).ReadAsync<TrainingJobResponse>();
        Assert.Null(untuned.Options.Tuning);
        Assert.Null((await client.WaitForJobAsync(untuned.Id, JobPolling.Ended)).Tuning);
    }

    [Theory]
    [InlineData("{\"mode\":\"Auto\",\"folds\":1}", "tuning.folds")]
    [InlineData("{\"mode\":\"Auto\",\"budgetSeconds\":0}", "tuning.budgetSeconds")]
    [InlineData("{\"mode\":\"Auto\",\"budgetSeconds\":301}", "tuning.budgetSeconds")]
    public async Task Bad_tuning_options_are_refused_naming_the_field(string tuning, string field)
    {
        var dataset = await client.UploadDatasetAsync("tuning", Archives.TwoClasses(3));
        var response = await client.PostAsync(
            "/api/training-jobs",
            new StringContent(
                $"{{\"datasetId\":\"{dataset.Id}\",\"tuning\":{tuning}}}",
                System.Text.Encoding.UTF8,
                "application/json"
            )
        );
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), problem.ToString());
    }
}
