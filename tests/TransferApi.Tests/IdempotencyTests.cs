using System.Net;
using System.Net.Http.Json;
using Microsoft.EntityFrameworkCore;
using TransferApi.Features.Datasets;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;

namespace TransferApi.Tests;

/// <summary>Safe retries: the same Idempotency-Key and request answer the first answer again and create nothing;
/// another request with the key is refused; racing retries create one object.</summary>
[Collection(ServiceCollection.Name)]
public class IdempotencyTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    private static HttpRequestMessage Keyed(string route, HttpContent content, string key)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, route) { Content = content };
        request.Headers.Add("Idempotency-Key", key);
        return request;
    }

    private static HttpRequestMessage Upload(string name, byte[] zip, string key) =>
        Keyed("/api/datasets", Archives.DatasetForm(name, zip), key);

    private Task<int> DatasetsNamedAsync(string name) =>
        factory.QueryAsync(db => db.Datasets.IgnoreQueryFilters().CountAsync(d => d.Name == name));

    [Fact]
    public async Task A_retried_upload_answers_the_first_answer_and_stores_one_data_set()
    {
        var zip = Archives.Zip(Archives.TwoClasses(2));
        var key = Guid.NewGuid().ToString();
        // Each request is a new multipart body with its own random boundary, as a client rebuilding it would send.
        var first = await client.SendAsync(Upload("retried upload", zip, key));
        var retry = await client.SendAsync(Upload("retried upload", zip, key));
        Assert.Equal(HttpStatusCode.Created, first.StatusCode);
        Assert.Equal(HttpStatusCode.Created, retry.StatusCode);
        Assert.False(first.Headers.Contains("Idempotent-Replayed"));
        Assert.Equal("true", retry.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(first.Headers.Location, retry.Headers.Location);
        var (created, replayed) = (await first.ReadAsync<DatasetResponse>(), await retry.ReadAsync<DatasetResponse>());
        Assert.Equal(created.Id, replayed.Id);
        Assert.Equal(created.ImageCount, replayed.ImageCount);
        Assert.Equal(1, await DatasetsNamedAsync("retried upload"));

        // The same key with another request: refused, and nothing created.
        var other = await client.SendAsync(Upload("another upload", zip, key));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, other.StatusCode);
        Assert.StartsWith("Idempotency-Key:", (await other.ProblemAsync()).GetProperty("detail").GetString());
        Assert.Equal(0, await DatasetsNamedAsync("another upload"));
    }

    [Fact]
    public async Task Racing_requests_with_one_key_create_one_training_job_and_all_get_its_answer()
    {
        var dataset = await (
            await client.PostAsync("/api/datasets", Archives.DatasetForm("race", Archives.Zip(Archives.TwoClasses(2))))
        ).ReadAsync<DatasetResponse>();
        var key = Guid.NewGuid().ToString();
        var body = $$"""{"datasetId":"{{dataset.Id}}","epochs":1}""";
        using var start = new Barrier(4);
        var answers = await Task.WhenAll(
            Enumerable
                .Range(0, 4)
                .Select(_ =>
                    Task.Run(async () =>
                    {
                        start.SignalAndWait();
                        return await client.SendAsync(
                            Keyed("/api/training-jobs", new StringContent(body, null, "application/json"), key)
                        );
                    })
                )
        );
        Assert.All(answers, a => Assert.Equal(HttpStatusCode.Accepted, a.StatusCode));
        var jobs = await Task.WhenAll(answers.Select(a => a.ReadAsync<TrainingJobResponse>()));
        Assert.Single(jobs.Select(j => j.Id).Distinct());
        Assert.Equal(3, answers.Count(a => a.Headers.Contains("Idempotent-Replayed")));
        Assert.Equal(
            1,
            await factory.QueryAsync(db =>
                db.TrainingJobs.IgnoreQueryFilters().CountAsync(j => j.DatasetId == dataset.Id)
            )
        );
        await client.WaitForJobAsync(jobs[0].Id, JobPolling.Ended);
    }

    [Fact]
    public async Task A_failed_request_is_not_remembered_and_keys_belong_to_one_tenant()
    {
        var key = Guid.NewGuid().ToString();
        // No file: a 400, not kept; the corrected retry with the same key runs.
        var empty = new MultipartFormDataContent { { new StringContent("tenant a"), "name" } };
        var refused = await client.SendAsync(Keyed("/api/datasets", empty, key));
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        var zip = Archives.Zip(Archives.TwoClasses(1));
        var stored = await client.SendAsync(Upload("tenant a", zip, key));
        Assert.Equal(HttpStatusCode.Created, stored.StatusCode);
        Assert.False(stored.Headers.Contains("Idempotent-Replayed"));

        // Another tenant's request with the same key is its own.
        var other = factory.CreateClient(await client.CreateKeyAsync(KeyScope.Train, "idempotency-b"));
        var theirs = await other.SendAsync(Upload("tenant a", zip, key));
        Assert.Equal(HttpStatusCode.Created, theirs.StatusCode);
        Assert.False(theirs.Headers.Contains("Idempotent-Replayed"));
        Assert.NotEqual((await stored.ReadAsync<DatasetResponse>()).Id, (await theirs.ReadAsync<DatasetResponse>()).Id);
        Assert.Equal(2, await DatasetsNamedAsync("tenant a"));
    }

    [Fact]
    public async Task A_key_over_255_characters_is_a_400_naming_the_header()
    {
        var request = Upload("bad key", Archives.Zip(Archives.TwoClasses(1)), new string('k', 256));
        var answer = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.BadRequest, answer.StatusCode);
        Assert.StartsWith("Idempotency-Key:", (await answer.ProblemAsync()).GetProperty("detail").GetString());
        Assert.Equal(0, await DatasetsNamedAsync("bad key"));
    }
}
