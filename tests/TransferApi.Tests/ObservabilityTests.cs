using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using TransferApi.Features.Datasets;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;
using TransferApi.Services;

namespace TransferApi.Tests;

/// <summary>
/// What an operator sees: Prometheus metrics at /metrics (admin keys only) for requests, predictions, dynamic
/// batches, the training queue, job outcomes and ingested images; spans that carry job and data set ids.
/// </summary>
[Collection(ServiceCollection.Name)]
public class ObservabilityTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    [Fact]
    public async Task Metrics_need_an_admin_key_and_count_requests_predictions_batches_jobs_and_ingested_images()
    {
        Assert.Equal(
            HttpStatusCode.Unauthorized,
            (await factory.CreateClient(key: null).GetAsync("/metrics")).StatusCode
        );
        var predictKey = await client.CreateKeyAsync(KeyScope.Predict);
        var forbidden = await factory.CreateClient(predictKey).GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        // Prometheus sends credentials as a bearer token.
        var scraper = factory.CreateClient(key: null);
        scraper.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", factory.AdminKey);
        var before = await ScrapeAsync(scraper);

        var zip = Archives.Zip([.. Archives.TwoClasses(4), ("ants/notes.txt", "not an image"u8.ToArray())]);
        var dataset = await (
            await client.PostAsync("/api/datasets", Archives.DatasetForm("observed", zip))
        ).ReadAsync<DatasetResponse>();
        var job = await (
            await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 2 })
        ).ReadAsync<TrainingJobResponse>();
        var done = await client.WaitForJobAsync(job.Id, JobPolling.Ended);
        Assert.Equal(JobStatus.Succeeded, done.Status);
        for (var i = 0; i < 3; i++)
            Assert.Equal(
                HttpStatusCode.OK,
                (
                    await client.PostAsync(
                        $"/api/models/{done.ModelId}/predict",
                        Archives.ImageForm(Archives.Photo("val", "bees", i).Item2)
                    )
                ).StatusCode
            );
        // ASP.NET Core records a request's duration after its response has gone out: under load the client can
        // scrape before the last predict is counted, so the scrape is repeated (for at most 10 s) until it is.
        var after = await ScrapeAsync(scraper);
        double Added(string series, params string[] labels) => after.Sum(series, labels) - before.Sum(series, labels);
        string[] predictOk = ["http_route=\"/api/models/{id}/predict\"", "http_response_status_code=\"200\""];
        for (
            var deadline = DateTime.UtcNow.AddSeconds(10);
            Added("http_server_request_duration_seconds_count", predictOk) < 3 && DateTime.UtcNow < deadline;
            after = await ScrapeAsync(scraper)
        )
            await Task.Delay(200);

        Assert.Equal(8, Added("transferapi_dataset_images_ingested_total", "outcome=\"stored\""));
        Assert.Equal(1, Added("transferapi_dataset_images_ingested_total", "outcome=\"rejected\""));
        Assert.True(
            Added(
                "transferapi_training_job_duration_seconds_count",
                "outcome=\"succeeded\"",
                "transferapi_backbone=\"resnet18-imagenet\""
            ) >= 1
        );
        Assert.True(Added("transferapi_predict_duration_seconds_count") >= 3);
        Assert.True(Added("transferapi_predict_batch_size_sum") >= 3, "every predicted image goes through a batch");
        Assert.True(Added("transferapi_predict_batch_size_count") >= 1);
        Assert.True(Added("http_server_request_duration_seconds_count", predictOk) >= 3);
        Assert.True(after.Has("transferapi_training_queue_length"), "the training queue length is exposed");
        Assert.True(after.Has("transferapi_training_jobs_running"));
        Assert.Equal(0, after.Sum("transferapi_predict_queue_length"));

        // The dashboard and alerting rules in deploy/monitoring use only series the service exposes.
        var monitoring = Path.Combine(TestData.RepositoryRoot, "deploy", "monitoring");
        var dashboard = JsonDocument
            .Parse(File.ReadAllText(Path.Combine(monitoring, "grafana-dashboard.json")))
            .RootElement;
        var queries = dashboard
            .GetProperty("panels")
            .EnumerateArray()
            .SelectMany(p => p.GetProperty("targets").EnumerateArray().Select(t => t.GetProperty("expr").GetString()!))
            .Concat(
                File.ReadLines(Path.Combine(monitoring, "prometheus-rules.yaml"))
                    .Select(l => Regex.Match(l, @"^\s*expr:\s*(.+)$"))
                    .Where(m => m.Success)
                    .Select(m => m.Groups[1].Value)
            )
            .ToList();
        Assert.True(queries.Count >= 15, $"{queries.Count} queries found");
        var used = queries
            .SelectMany(q =>
                Regex
                    .Matches(q, @"\b(?:transferapi|http_server|dotnet|db_client|kestrel)_[a-z_]+\b")
                    .Select(m => m.Value)
            )
            .ToHashSet();
        Assert.All(used, series =>
            Assert.True(after.Has(series), $"{series} is used by deploy/monitoring but not exposed")
        );
    }

    [Fact]
    public async Task Training_jobs_uploads_and_predictions_are_traced_with_their_ids()
    {
        var spans = new ConcurrentBag<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == Telemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Add,
        };
        ActivitySource.AddActivityListener(listener);

        var dataset = await (
            await client.PostAsync(
                "/api/datasets",
                Archives.DatasetForm("traced", Archives.Zip(Archives.TwoClasses(3)))
            )
        ).ReadAsync<DatasetResponse>();
        var job = await (
            await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 1 })
        ).ReadAsync<TrainingJobResponse>();
        var done = await client.WaitForJobAsync(job.Id, JobPolling.Ended);
        await client.PostAsync(
            $"/api/models/{done.ModelId}/predict",
            Archives.ImageForm(Archives.Photo("val", "ants", 0).Item2)
        );

        var upload = Assert.Single(spans, s =>
            s.OperationName == "dataset create" && Equals(s.GetTagItem("transferapi.dataset.id"), dataset.Id)
        );
        Assert.Equal(6, upload.GetTagItem("transferapi.images.stored"));
        var training = await EventuallyAsync(() =>
            spans.SingleOrDefault(s =>
                s.OperationName == "training job" && Equals(s.GetTagItem("transferapi.job.id"), job.Id)
            )
        );
        Assert.Equal(dataset.Id, training.GetTagItem("transferapi.dataset.id"));
        Assert.Equal("succeeded", training.GetTagItem("transferapi.outcome"));
        var predict = Assert.Single(spans, s =>
            s.OperationName == "predict" && Equals(s.GetTagItem("transferapi.model.id"), done.ModelId)
        );
        // A prediction's span sits inside its HTTP request's span, so a trace shows both.
        Assert.Equal("Microsoft.AspNetCore.Hosting.HttpRequestIn", predict.Parent?.OperationName);
    }

    /// <summary>The training span ends just after the job's row says Succeeded.</summary>
    private static async Task<Activity> EventuallyAsync(Func<Activity?> find)
    {
        for (var i = 0; i < 50; i++)
        {
            if (find() is { } found)
                return found;
            await Task.Delay(100);
        }
        return find() ?? throw new Xunit.Sdk.XunitException("no such span");
    }

    private static async Task<PrometheusText> ScrapeAsync(HttpClient scraper)
    {
        var response = await scraper.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType);
        return new PrometheusText(await response.Content.ReadAsStringAsync());
    }
}
