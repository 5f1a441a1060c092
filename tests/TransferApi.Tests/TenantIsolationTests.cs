using System.Net;
using System.Net.Http.Json;
using TransferApi.Features;
using TransferApi.Features.Datasets;
using TransferApi.Features.Keys;
using TransferApi.Features.Models;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;
using TransferApi.TestSupport;

namespace TransferApi.Tests;

/// <summary>A tenant's data sets, jobs and models do not exist for another tenant's keys: every route answers 404, lists leave them out.</summary>
[Collection(ServiceCollection.Name)]
public class TenantIsolationTests(TransferApiFactory factory)
{
    private readonly HttpClient owner = factory.CreateClient();

    private async Task<HttpClient> KeyAsync(KeyScope scope, string tenant)
    {
        var created = await owner.PostAsJsonAsync("/api/keys", new { name = $"{tenant} {scope}", tenant, scope = scope.ToString() });
        return factory.CreateClient((await created.ReadAsync<KeyResponse>()).Key);
    }

    [Fact]
    public async Task Every_route_answers_404_for_another_tenants_ids_and_lists_leave_them_out()
    {
        // The owner (the bootstrap key's tenant) has a data set with images, a finished job and a named model with an alias.
        var dataset = await (await owner.PostAsync("/api/datasets", Archives.DatasetForm("owner's", Archives.Zip(Archives.TwoClasses(2))))).ReadAsync<DatasetResponse>();
        var image = (await (await owner.GetAsync($"/api/datasets/{dataset.Id}/images")).ReadAsync<Page<DatasetImageResponse>>()).Items[0].Id;
        var started = await (await owner.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 1 })).ReadAsync<TrainingJobResponse>();
        var job = await owner.WaitForJobAsync(started.Id, JobPolling.Ended);
        Assert.Equal(JobStatus.Succeeded, job.Status);
        var model = job.ModelId!.Value;
        var name = $"owned-{Guid.NewGuid():N}"[..20];
        Assert.Equal(HttpStatusCode.OK, (await owner.PatchAsJsonAsync($"/api/models/{model}", new { name })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await owner.PutAsync($"/api/models/{model}/aliases/production", null)).StatusCode);
        // Served once, so the model is in the (shared) model cache too.
        Assert.Equal(HttpStatusCode.OK, (await owner.PostAsync($"/api/models/{model}/predict", Archives.ImageForm(Archives.Photo("val", "ants", 0).Item2))).StatusCode);

        var intruder = await KeyAsync(KeyScope.Admin, "intruder");
        var intruderPredict = await KeyAsync(KeyScope.Predict, "intruder");
        var photo = Archives.Photo("val", "bees", 0).Item2;
        var attempts = new (string Route, Func<HttpClient, Task<HttpResponseMessage>> Call)[]
        {
            ("GET dataset", c => c.GetAsync($"/api/datasets/{dataset.Id}")),
            ("POST split", c => c.PostAsJsonAsync($"/api/datasets/{dataset.Id}/split", new { seed = 1 })),
            ("GET images", c => c.GetAsync($"/api/datasets/{dataset.Id}/images")),
            ("POST images", c => c.PostAsync($"/api/datasets/{dataset.Id}/images", Archives.ImagesForm("ants", [("x.jpg", photo)]))),
            ("GET image", c => c.GetAsync($"/api/datasets/{dataset.Id}/images/{image}")),
            ("PATCH image", c => c.PatchAsJsonAsync($"/api/datasets/{dataset.Id}/images/{image}", new { label = "bees" })),
            ("DELETE image", c => c.DeleteAsync($"/api/datasets/{dataset.Id}/images/{image}")),
            ("DELETE dataset", c => c.DeleteAsync($"/api/datasets/{dataset.Id}")),
            ("GET job", c => c.GetAsync($"/api/training-jobs/{job.Id}")),
            ("POST cancel", c => c.PostAsync($"/api/training-jobs/{job.Id}/cancel", null)),
            ("GET events", c => c.GetAsync($"/api/training-jobs/{job.Id}/events")),
            ("GET report", c => c.GetAsync($"/api/training-jobs/{job.Id}/report")),
            ("GET learning curves", c => c.GetAsync($"/api/training-jobs/{job.Id}/charts/learning-curves.png")),
            ("GET confusion matrix", c => c.GetAsync($"/api/training-jobs/{job.Id}/charts/confusion-matrix.png")),
            ("GET model", c => c.GetAsync($"/api/models/{model}")),
            ("GET model by name", c => c.GetAsync($"/api/models/{name}")),
            ("GET model by alias", c => c.GetAsync($"/api/models/{name}@production")),
            ("PATCH model", c => c.PatchAsJsonAsync($"/api/models/{model}", new { name = "stolen" })),
            ("PUT alias", c => c.PutAsync($"/api/models/{model}/aliases/mine", null)),
            ("DELETE alias", c => c.DeleteAsync($"/api/models/{model}/aliases/production")),
            ("GET export", c => c.GetAsync($"/api/models/{model}/export?format=torchsharp")),
            ("POST predict", c => c.PostAsync($"/api/models/{model}/predict", Archives.ImageForm(photo))),
            ("POST predict by name", c => c.PostAsync($"/api/models/{name}@production/predict", Archives.ImageForm(photo))),
            ("DELETE model", c => c.DeleteAsync($"/api/models/{model}")),
        };
        foreach (var (route, call) in attempts)
        {
            var response = await call(intruder);
            Assert.True(response.StatusCode == HttpStatusCode.NotFound, $"{route}: {response.StatusCode} for another tenant's id");
            await response.ProblemAsync();
        }
        foreach (var (route, call) in attempts.Where(a => a.Route.StartsWith("POST predict", StringComparison.Ordinal)))
            Assert.Equal(HttpStatusCode.NotFound, (await call(intruderPredict)).StatusCode);

        var steal = await intruder.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id });
        Assert.Equal(HttpStatusCode.BadRequest, steal.StatusCode);
        Assert.True((await steal.ProblemAsync()).GetProperty("errors").TryGetProperty("datasetId", out _));

        Assert.DoesNotContain((await (await intruder.GetAsync("/api/datasets?pageSize=100")).ReadAsync<Page<DatasetResponse>>()).Items, d => d.Id == dataset.Id);
        Assert.DoesNotContain((await (await intruder.GetAsync("/api/training-jobs?pageSize=100")).ReadAsync<Page<TrainingJobResponse>>()).Items, j => j.Id == job.Id);
        Assert.DoesNotContain((await (await intruder.GetAsync("/api/models?pageSize=100")).ReadAsync<Page<ModelResponse>>()).Items, m => m.Id == model);

        // Nothing the intruder tried changed the owner's things; names are per tenant, so the intruder may use the same one.
        Assert.Equal(HttpStatusCode.OK, (await owner.GetAsync($"/api/datasets/{dataset.Id}/images/{image}")).StatusCode);
        var kept = await (await owner.GetAsync($"/api/models/{name}@production")).ReadAsync<ModelResponse>();
        Assert.Equal((model, name, 1), (kept.Id, kept.Name, kept.Version));
        Assert.Equal(2, (await (await owner.GetAsync($"/api/datasets/{dataset.Id}")).ReadAsync<DatasetResponse>()).Classes.Count);
    }
}
