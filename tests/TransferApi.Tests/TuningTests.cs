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
        // The chosen one is the best cross-validated accuracy, or a more regularised probe within one standard error.
        var best = search.Candidates.MaxBy(c => c.CvScore)!;
        Assert.True(
            search.Candidates[search.ChosenIndex].CvScore >= best.CvScore - best.CvStd / Math.Sqrt(search.Folds),
            $"{search.Candidates[search.ChosenIndex].CvScore} vs {best.CvScore} ± {best.CvStd}"
        );
        Assert.Equal(search.Candidates[search.ChosenIndex].Settings, search.Chosen);
        // The model trained the chosen recipe: at most its epochs (a probe stops once converged).
        Assert.InRange(done.Metrics.Count, 1, search.Chosen.Epochs);
        if (search.Chosen.Optimizer != OptimizerKind.Lbfgs)
            Assert.Equal(search.Chosen.Epochs, done.Metrics.Count);

        var untuned = await (
            await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 2 })
        ).ReadAsync<TrainingJobResponse>();
        Assert.Null(untuned.Options.Tuning);
        Assert.Null((await client.WaitForJobAsync(untuned.Id, JobPolling.Ended)).Tuning);

        // The search as a picture; a job that did not search has none to show.
        var chart = await client.GetAsync($"/api/training-jobs/{job.Id}/charts/tuning.png");
        Assert.Equal(HttpStatusCode.OK, chart.StatusCode);
        Assert.Equal("image/png", chart.Content.Headers.ContentType?.MediaType);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], (await chart.Content.ReadAsByteArrayAsync())[..4]);
        var none = await client.GetAsync($"/api/training-jobs/{untuned.Id}/charts/tuning.png");
        Assert.Equal(HttpStatusCode.Conflict, none.StatusCode);
        Assert.Contains("tuning off", await none.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_request_fixing_nothing_is_tuned_and_one_fixing_a_head_setting_trains_exactly_as_before()
    {
        var dataset = await client.UploadDatasetAsync("tuning-defaults", Archives.TwoClasses(10));
        async Task<TrainingJobResponse> TrainAsync(object request)
        {
            var accepted = await client.PostAsJsonAsync("/api/training-jobs", request);
            Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
            var job = await accepted.ReadAsync<TrainingJobResponse>();
            var done = await client.WaitForJobAsync(job.Id, JobPolling.Ended, seconds: 240);
            Assert.Equal(JobStatus.Succeeded, done.Status);
            return done;
        }
        async Task<List<double>> ProbabilitiesAsync(Guid model)
        {
            var answer = await (
                await client.PostAsync(
                    $"/api/models/{model}/predict?topK=2",
                    Archives.ImageForm(Archives.Photo("val", "bees", 0).Item2)
                )
            ).ReadAsync<Features.Models.PredictResponse>();
            return answer.Predictions.OrderBy(p => p.Label).Select(p => p.Probability).ToList();
        }

        var tuned = await TrainAsync(new { datasetId = dataset.Id });
        Assert.Equal(new TuningOptionsResponse(30, 5, Training.Tuning.TuningMetric.LogLoss), tuned.Options.Tuning);
        Assert.NotNull(tuned.Tuning);
        Assert.True(tuned.Tuning.Candidates.Count > 10, $"{tuned.Tuning.Candidates.Count} candidates");

        // Off, and a request that fixes one head setting (here to its default value), train the untuned recipe: the
        // same model to the last bit, as every request did before the search existed.
        var off = await TrainAsync(new { datasetId = dataset.Id, tuning = new { mode = "Off" } });
        var fixedEpochs = await TrainAsync(new { datasetId = dataset.Id, epochs = 10 });
        Assert.Null(off.Options.Tuning);
        Assert.Null(fixedEpochs.Options.Tuning);
        Assert.Null(off.Tuning);
        Assert.Equal(10, off.Metrics.Count);
        Assert.Equal(
            off.Metrics.Select(m => (m.TrainLoss, m.ValLoss)),
            fixedEpochs.Metrics.Select(m => (m.TrainLoss, m.ValLoss))
        );
        var untunedAnswer = await ProbabilitiesAsync(off.ModelId!.Value);
        Assert.Equal(untunedAnswer, await ProbabilitiesAsync(fixedEpochs.ModelId!.Value));
        Assert.NotEqual(untunedAnswer, await ProbabilitiesAsync(tuned.ModelId!.Value));
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
