using System.Net;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using TransferApi.Features.Datasets;
using TransferApi.Features.Models;
using TransferApi.Features.TrainingJobs;
using TransferApi.Http;
using TransferApi.Persistence;

namespace TransferApi.Tests;

/// <summary>
/// A tenant's data sets, jobs and models do not exist for another tenant's keys: every route answers 404 to each
/// scope wide enough for it and 403 to narrower ones, lists leave them out.
/// </summary>
[Collection(ServiceCollection.Name)]
public class TenantIsolationTests(TransferApiFactory factory)
{
    private readonly HttpClient owner = factory.CreateClient();

    private async Task<HttpClient> KeyAsync(KeyScope scope, string tenant) =>
        factory.CreateClient(await owner.CreateKeyAsync(scope, tenant));

    [Fact]
    public async Task Every_route_answers_404_for_another_tenants_ids_and_lists_leave_them_out()
    {
        // The owner (the bootstrap key's tenant) has a data set with images, a finished job and a named model with an
        // alias.
        var dataset = await (
            await owner.PostAsync(
                "/api/datasets",
                Archives.DatasetForm("owner's", Archives.Zip(Archives.TwoClasses(2)))
            )
        ).ReadAsync<DatasetResponse>();
        var image = (
            await (await owner.GetAsync($"/api/datasets/{dataset.Id}/images")).ReadAsync<Page<DatasetImageResponse>>()
        )
            .Items[0]
            .Id;
        var started = await (
            await owner.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 1 })
        ).ReadAsync<TrainingJobResponse>();
        var job = await owner.WaitForJobAsync(started.Id, JobPolling.Ended);
        Assert.Equal(JobStatus.Succeeded, job.Status);
        var model = job.ModelId!.Value;
        var name = $"owned-{Guid.NewGuid():N}"[..20];
        Assert.Equal(
            HttpStatusCode.OK,
            (await owner.PatchAsJsonAsync($"/api/models/{model}", new { name })).StatusCode
        );
        Assert.Equal(
            HttpStatusCode.OK,
            (await owner.PutAsync($"/api/models/{model}/aliases/production", null)).StatusCode
        );
        // Served once, so the model is in the (shared) model cache too.
        Assert.Equal(
            HttpStatusCode.OK,
            (
                await owner.PostAsync(
                    $"/api/models/{model}/predict",
                    Archives.ImageForm(Archives.Photo("val", "ants", 0).Item2)
                )
            ).StatusCode
        );

        // A webhook with a delivery (to a closed port: it is only looked at).
        var webhook = await (
            await owner.PostAsJsonAsync(
                "/api/webhooks",
                new { url = "http://127.0.0.1:9/hook", events = new[] { "training-job.succeeded" } }
            )
        ).ReadAsync<TransferApi.Features.Webhooks.WebhookResponse>();
        var delivery = await (
            await owner.PostAsync($"/api/webhooks/{webhook.Id}/test", null)
        ).ReadAsync<TransferApi.Features.Webhooks.WebhookDeliveryResponse>();

        var batch = await (
            await owner.PostAsJsonAsync($"/api/models/{model}/batch-predictions", new { datasetId = dataset.Id })
        ).ReadAsync<BatchPredictionResponse>();

        var intruders = new Dictionary<KeyScope, HttpClient>();
        foreach (var scope in Enum.GetValues<KeyScope>())
            intruders[scope] = await KeyAsync(scope, "intruder");
        var intruder = intruders[KeyScope.Admin];
        var photo = Archives.Photo("val", "bees", 0).Item2;
        // Each route that takes a tenant's id, with the least scope it needs (patterns as routing has them, without
        // constraints).
        var attempts = new (
            string Method,
            string Pattern,
            KeyScope Needs,
            Func<HttpClient, Task<HttpResponseMessage>> Call
        )[]
        {
            ("GET", "/api/datasets/{id}", KeyScope.Train, c => c.GetAsync($"/api/datasets/{dataset.Id}")),
            ("POST", "/api/datasets/{id}/split", KeyScope.Train, c =>
                c.PostAsJsonAsync($"/api/datasets/{dataset.Id}/split", new { seed = 1 })
            ),
            ("GET", "/api/datasets/{id}/images", KeyScope.Train, c => c.GetAsync($"/api/datasets/{dataset.Id}/images")),
            ("POST", "/api/datasets/{id}/images", KeyScope.Train, c =>
                c.PostAsync($"/api/datasets/{dataset.Id}/images", Archives.ImagesForm("ants", [("x.jpg", photo)]))
            ),
            ("GET", "/api/datasets/{id}/images/{imageId}", KeyScope.Train, c =>
                c.GetAsync($"/api/datasets/{dataset.Id}/images/{image}")
            ),
            ("PATCH", "/api/datasets/{id}/images/{imageId}", KeyScope.Train, c =>
                c.PatchAsJsonAsync($"/api/datasets/{dataset.Id}/images/{image}", new { label = "bees" })
            ),
            ("DELETE", "/api/datasets/{id}/images/{imageId}", KeyScope.Train, c =>
                c.DeleteAsync($"/api/datasets/{dataset.Id}/images/{image}")
            ),
            ("GET", "/api/datasets/{id}/health", KeyScope.Train, c => c.GetAsync($"/api/datasets/{dataset.Id}/health")),
            ("GET", "/api/datasets/{id}/suggestions", KeyScope.Train, c =>
                c.GetAsync($"/api/datasets/{dataset.Id}/suggestions")
            ),
            ("GET", "/api/datasets/{id}/charts/embedding-map.png", KeyScope.Train, c =>
                c.GetAsync($"/api/datasets/{dataset.Id}/charts/embedding-map.png")
            ),
            ("DELETE", "/api/datasets/{id}", KeyScope.Train, c => c.DeleteAsync($"/api/datasets/{dataset.Id}")),
            ("GET", "/api/training-jobs/{id}", KeyScope.Train, c => c.GetAsync($"/api/training-jobs/{job.Id}")),
            ("POST", "/api/training-jobs/{id}/cancel", KeyScope.Train, c =>
                c.PostAsync($"/api/training-jobs/{job.Id}/cancel", null)
            ),
            ("GET", "/api/training-jobs/{id}/events", KeyScope.Train, c =>
                c.GetAsync($"/api/training-jobs/{job.Id}/events")
            ),
            ("GET", "/api/training-jobs/{id}/report", KeyScope.Train, c =>
                c.GetAsync($"/api/training-jobs/{job.Id}/report")
            ),
            ("GET", "/api/training-jobs/{id}/charts/learning-curves.png", KeyScope.Train, c =>
                c.GetAsync($"/api/training-jobs/{job.Id}/charts/learning-curves.png")
            ),
            ("GET", "/api/training-jobs/{id}/charts/tuning.png", KeyScope.Train, c =>
                c.GetAsync($"/api/training-jobs/{job.Id}/charts/tuning.png")
            ),
            ("GET", "/api/training-jobs/{id}/charts/confusion-matrix.png", KeyScope.Train, c =>
                c.GetAsync($"/api/training-jobs/{job.Id}/charts/confusion-matrix.png")
            ),
            ("GET", "/api/training-jobs/{id}/charts/reliability.png", KeyScope.Train, c =>
                c.GetAsync($"/api/training-jobs/{job.Id}/charts/reliability.png")
            ),
            ("GET", "/api/training-jobs/{id}/charts/precision-recall.png", KeyScope.Train, c =>
                c.GetAsync($"/api/training-jobs/{job.Id}/charts/precision-recall.png")
            ),
            ("GET", "/api/training-jobs/{id}/charts/top-losses.png", KeyScope.Train, c =>
                c.GetAsync($"/api/training-jobs/{job.Id}/charts/top-losses.png")
            ),
            ("GET", "/api/training-jobs/{id}/report/images", KeyScope.Train, c =>
                c.GetAsync($"/api/training-jobs/{job.Id}/report/images?outcome=misclassified")
            ),
            ("GET", "/api/models/{id}", KeyScope.Train, c => c.GetAsync($"/api/models/{model}")),
            ("GET", "/api/models/{id}", KeyScope.Train, c => c.GetAsync($"/api/models/{name}")),
            ("GET", "/api/models/{id}", KeyScope.Train, c => c.GetAsync($"/api/models/{name}@production")),
            ("PATCH", "/api/models/{id}", KeyScope.Train, c =>
                c.PatchAsJsonAsync($"/api/models/{model}", new { name = "stolen" })
            ),
            ("PUT", "/api/models/{id}/aliases/{alias}", KeyScope.Train, c =>
                c.PutAsync($"/api/models/{model}/aliases/mine", null)
            ),
            ("DELETE", "/api/models/{id}/aliases/{alias}", KeyScope.Train, c =>
                c.DeleteAsync($"/api/models/{model}/aliases/production")
            ),
            ("GET", "/api/models/{id}/export", KeyScope.Train, c =>
                c.GetAsync($"/api/models/{model}/export?format=torchsharp")
            ),
            ("POST", "/api/models/{id}/predict", KeyScope.Predict, c =>
                c.PostAsync($"/api/models/{model}/predict", Archives.ImageForm(photo))
            ),
            ("POST", "/api/models/{id}/predict", KeyScope.Predict, c =>
                c.PostAsync($"/api/models/{name}@production/predict", Archives.ImageForm(photo))
            ),
            ("POST", "/api/models/{id}/batch-predictions", KeyScope.Train, c =>
                c.PostAsJsonAsync($"/api/models/{model}/batch-predictions", new { datasetId = dataset.Id })
            ),
            ("GET", "/api/models/{id}/batch-predictions", KeyScope.Train, c =>
                c.GetAsync($"/api/models/{model}/batch-predictions")
            ),
            ("GET", "/api/models/{id}/batch-predictions/{batchId}", KeyScope.Train, c =>
                c.GetAsync($"/api/models/{model}/batch-predictions/{batch.Id}")
            ),
            ("POST", "/api/models/{id}/batch-predictions/{batchId}/cancel", KeyScope.Train, c =>
                c.PostAsync($"/api/models/{model}/batch-predictions/{batch.Id}/cancel", null)
            ),
            ("GET", "/api/models/{id}/batch-predictions/{batchId}/results", KeyScope.Train, c =>
                c.GetAsync($"/api/models/{model}/batch-predictions/{batch.Id}/results")
            ),
            ("DELETE", "/api/models/{id}", KeyScope.Train, c => c.DeleteAsync($"/api/models/{model}")),
            ("GET", "/api/webhooks/{id}", KeyScope.Train, c => c.GetAsync($"/api/webhooks/{webhook.Id}")),
            ("POST", "/api/webhooks/{id}/test", KeyScope.Train, c =>
                c.PostAsync($"/api/webhooks/{webhook.Id}/test", null)
            ),
            ("GET", "/api/webhooks/{id}/deliveries", KeyScope.Train, c =>
                c.GetAsync($"/api/webhooks/{webhook.Id}/deliveries")
            ),
            ("GET", "/api/webhooks/{id}/deliveries/{deliveryId}", KeyScope.Train, c =>
                c.GetAsync($"/api/webhooks/{webhook.Id}/deliveries/{delivery.Id}")
            ),
            ("DELETE", "/api/webhooks/{id}", KeyScope.Train, c => c.DeleteAsync($"/api/webhooks/{webhook.Id}")),
        };
        // The table covers exactly the routes of tenant-owned things that take an id.
        var routes = factory
            .Services.GetRequiredService<EndpointDataSource>()
            .Endpoints.OfType<RouteEndpoint>()
            .Where(e =>
                e.RoutePattern.Parameters.Count > 0
                && new[] { "/api/datasets", "/api/training-jobs", "/api/models", "/api/webhooks" }.Any(
                    e.RoutePattern.RawText!.StartsWith
                )
            )
            .SelectMany(e =>
                e.Metadata.GetMetadata<HttpMethodMetadata>()!
                    .HttpMethods.Select(m => $"{m} {Regex.Replace(e.RoutePattern.RawText!, ":[a-z]+}", "}")}")
            );
        Assert.Equal(routes.Distinct().Order(), attempts.Select(a => $"{a.Method} {a.Pattern}").Distinct().Order());

        var anonymous = factory.CreateClient(key: null);
        foreach (var (method, pattern, needs, call) in attempts)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await call(anonymous)).StatusCode);
            // Too narrow a scope is refused before the id is looked at; otherwise the id does not exist for this
            // tenant.
            foreach (var (scope, client) in intruders)
            {
                var response = await call(client);
                var expected = scope >= needs ? HttpStatusCode.NotFound : HttpStatusCode.Forbidden;
                Assert.True(
                    response.StatusCode == expected,
                    $"{method} {pattern} with another tenant's {scope} key: {response.StatusCode}, expected {expected}"
                );
                await response.ProblemAsync();
            }
        }

        var steal = await intruder.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id });
        Assert.Equal(HttpStatusCode.BadRequest, steal.StatusCode);
        Assert.True((await steal.ProblemAsync()).GetProperty("errors").TryGetProperty("datasetId", out _));

        Assert.DoesNotContain(
            (await (await intruder.GetAsync("/api/datasets?pageSize=100")).ReadAsync<Page<DatasetResponse>>()).Items,
            d => d.Id == dataset.Id
        );
        Assert.DoesNotContain(
            (
                await (await intruder.GetAsync("/api/training-jobs?pageSize=100")).ReadAsync<
                    Page<TrainingJobResponse>
                >()
            ).Items,
            j => j.Id == job.Id
        );
        Assert.DoesNotContain(
            (await (await intruder.GetAsync("/api/models?pageSize=100")).ReadAsync<Page<ModelResponse>>()).Items,
            m => m.Id == model
        );

        // Nothing the intruder tried changed the owner's things; names are per tenant, so the intruder may use the same
        // one.
        Assert.Equal(
            HttpStatusCode.OK,
            (await owner.GetAsync($"/api/datasets/{dataset.Id}/images/{image}")).StatusCode
        );
        var kept = await (await owner.GetAsync($"/api/models/{name}@production")).ReadAsync<ModelResponse>();
        Assert.Equal((model, name, 1), (kept.Id, kept.Name, kept.Version));
        Assert.Equal(
            2,
            (await (await owner.GetAsync($"/api/datasets/{dataset.Id}")).ReadAsync<DatasetResponse>()).Classes.Count
        );
        Assert.DoesNotContain(
            await (await intruder.GetAsync("/api/webhooks")).ReadAsync<
                List<TransferApi.Features.Webhooks.WebhookResponse>
            >(),
            w => w.Id == webhook.Id
        );
        // Still the owner's; deleted now, so later tests' events do not go to a closed port.
        Assert.Equal(HttpStatusCode.NoContent, (await owner.DeleteAsync($"/api/webhooks/{webhook.Id}")).StatusCode);
    }
}
