using System.Net;
using System.Net.Http.Json;
using System.Text;
using Microsoft.EntityFrameworkCore;
using TransferApi.Features.Datasets;
using TransferApi.Features.TrainingJobs;
using TransferApi.Features.Webhooks;
using TransferApi.Http;
using TransferApi.Persistence;
using Xunit.Abstractions;

namespace TransferApi.Tests;

/// <summary>
/// Webhooks against real receivers on loopback: signed events of the key's tenant only, retried with growing waits
/// until a 2xx answer, one event id across attempts, timeouts, refusals, and secrets a database dump does not
/// reveal.
/// </summary>
[Collection(ServiceCollection.Name)]
public class WebhookTests(TransferApiFactory factory, ITestOutputHelper output)
{
    private readonly HttpClient admin = factory.CreateClient();

    private async Task<HttpClient> TrainKeyAsync(string tenant) =>
        factory.CreateClient(await admin.CreateKeyAsync(KeyScope.Train, tenant));

    private static async Task<WebhookResponse> CreateAsync(HttpClient client, string url, params string[] events)
    {
        var response = await client.PostAsJsonAsync("/api/webhooks", new { url, events });
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return await response.ReadAsync<WebhookResponse>();
    }

    private static async Task<WebhookDeliveryResponse> WaitForDeliveryAsync(
        HttpClient client,
        Guid webhook,
        Guid delivery,
        Func<WebhookDeliveryResponse, bool> done
    )
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var current = await (
                await client.GetAsync($"/api/webhooks/{webhook}/deliveries/{delivery}")
            ).ReadAsync<WebhookDeliveryResponse>();
            if (done(current) || DateTime.UtcNow > deadline)
                return current;
            await Task.Delay(200);
        }
    }

    [Fact]
    public async Task A_failing_receiver_gets_the_same_signed_event_again_until_it_answers_2xx()
    {
        var client = await TrainKeyAsync("hooks-retry");
        await using var receiver = await WebhookReceiver.StartAsync(500, 500);
        var webhook = await CreateAsync(client, receiver.Url, "training-job.succeeded");
        Assert.StartsWith("whsec_", webhook.Secret);

        var ping = await client.PostAsync($"/api/webhooks/{webhook.Id}/test", null);
        Assert.Equal(HttpStatusCode.Accepted, ping.StatusCode);
        var accepted = await ping.ReadAsync<WebhookDeliveryResponse>();
        var got = await receiver.WaitForAsync(3);

        // Three attempts of one event: the same id and body, each signed anew with the webhook's secret.
        Assert.Equal(3, got.Count);
        Assert.Single(got.Select(r => r.EventId).Distinct());
        Assert.Single(got.Select(r => r.Body).Distinct());
        Assert.All(got, r => Assert.True(WebhookReceiver.SignatureIsValid(r, webhook.Secret!)));
        Assert.False(WebhookReceiver.SignatureIsValid(got[0], webhook.Secret! + "x"));
        var body = got[0].Json;
        Assert.Equal("ping", body.GetProperty("type").GetString());
        Assert.Equal(accepted.EventId.ToString(), body.GetProperty("id").GetString());
        Assert.Equal(got[0].EventId, body.GetProperty("id").GetString());
        Assert.Equal(webhook.Id, body.GetProperty("data").GetProperty("webhookId").GetGuid());
        // Waits double (1 s, then 2 s here).
        var (firstWait, secondWait) = (got[1].At - got[0].At, got[2].At - got[1].At);
        output.WriteLine($"waits between attempts: {firstWait.TotalSeconds:F2} s, {secondWait.TotalSeconds:F2} s");
        Assert.True(firstWait >= TimeSpan.FromSeconds(0.9), $"first retry after {firstWait}");
        Assert.True(secondWait >= TimeSpan.FromSeconds(1.9), $"second retry after {secondWait}");

        var delivery = await WaitForDeliveryAsync(client, webhook.Id, accepted.Id, d =>
            d.State == DeliveryState.Succeeded
        );
        Assert.Equal(DeliveryState.Succeeded, delivery.State);
        Assert.Equal([500, 500, 200], delivery.Attempts.Select(a => a.StatusCode));
        Assert.Equal("HTTP 500", delivery.Attempts[0].Error);
        Assert.Equal("not now", delivery.Attempts[0].Response);
        Assert.Null(delivery.NextAttemptAt);
        var listed = await (await client.GetAsync($"/api/webhooks/{webhook.Id}/deliveries")).ReadAsync<
            Page<WebhookDeliveryResponse>
        >();
        Assert.Equal(accepted.Id, Assert.Single(listed.Items).Id);
        // The secret was shown once.
        Assert.Null((await (await client.GetAsync($"/api/webhooks/{webhook.Id}")).ReadAsync<WebhookResponse>()).Secret);
        Assert.All(await (await client.GetAsync("/api/webhooks")).ReadAsync<List<WebhookResponse>>(), w =>
            Assert.Null(w.Secret)
        );
    }

    [Fact]
    public async Task Job_health_and_alias_events_reach_the_tenants_webhooks_and_no_other_tenants()
    {
        var owner = await TrainKeyAsync("hooks-owner");
        var other = await TrainKeyAsync("hooks-other");
        await using var ownerReceiver = await WebhookReceiver.StartAsync();
        await using var otherReceiver = await WebhookReceiver.StartAsync();
        var webhook = await CreateAsync(
            owner,
            ownerReceiver.Url,
            "training-job.succeeded",
            "dataset.health.ready",
            "model.alias.moved"
        );
        await CreateAsync(
            other,
            otherReceiver.Url,
            "training-job.succeeded",
            "training-job.failed",
            "training-job.cancelled",
            "dataset.health.ready",
            "batch-prediction.completed",
            "model.alias.moved"
        );

        var dataset = await (
            await owner.PostAsync("/api/datasets", Archives.DatasetForm("hooked", Archives.Zip(Archives.TwoClasses(2))))
        ).ReadAsync<DatasetResponse>();
        var health = (await ownerReceiver.WaitForAsync(1, r => r.Type == "dataset.health.ready"))[0].Json;
        Assert.Equal(dataset.Id, health.GetProperty("data").GetProperty("datasetId").GetGuid());
        Assert.Equal(
            $"/api/datasets/{dataset.Id}/health",
            health.GetProperty("data").GetProperty("links").GetProperty("health").GetString()
        );

        var started = await (
            await owner.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 1 })
        ).ReadAsync<TrainingJobResponse>();
        var job = await owner.WaitForJobAsync(started.Id, JobPolling.Ended);
        Assert.Equal(JobStatus.Succeeded, job.Status);
        var ended = (await ownerReceiver.WaitForAsync(1, r => r.Type == "training-job.succeeded"))[0];
        var data = ended.Json.GetProperty("data");
        Assert.Equal(job.Id, data.GetProperty("jobId").GetGuid());
        Assert.Equal(job.ModelId, data.GetProperty("modelId").GetGuid());
        Assert.Equal("Succeeded", data.GetProperty("status").GetString());
        Assert.True(WebhookReceiver.SignatureIsValid(ended, webhook.Secret!));
        output.WriteLine(
            $"training-job.succeeded received {(ended.At - job.FinishedAt!.Value).TotalMilliseconds:F0} ms after the "
                + "job ended"
        );

        var model = job.ModelId!.Value;
        Assert.Equal(
            HttpStatusCode.OK,
            (await owner.PatchAsJsonAsync($"/api/models/{model}", new { name = "hooked-model" })).StatusCode
        );
        Assert.Equal(
            HttpStatusCode.OK,
            (await owner.PutAsync($"/api/models/{model}/aliases/production", null)).StatusCode
        );
        var moved = (await ownerReceiver.WaitForAsync(1, r => r.Type == "model.alias.moved"))[0]
            .Json.GetProperty("data");
        Assert.Equal("hooked-model", moved.GetProperty("name").GetString());
        Assert.Equal("production", moved.GetProperty("alias").GetString());
        Assert.Equal(model, moved.GetProperty("modelId").GetGuid());
        Assert.Equal(1, moved.GetProperty("version").GetInt32());

        // Exactly one of each; the other tenant, subscribed to everything, heard nothing.
        Assert.Equal(3, ownerReceiver.All.Count);
        Assert.Empty(otherReceiver.All);
        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync($"/api/webhooks/{webhook.Id}")).StatusCode);
        Assert.DoesNotContain(await (await other.GetAsync("/api/webhooks")).ReadAsync<List<WebhookResponse>>(), w =>
            w.Id == webhook.Id
        );
    }

    [Fact]
    public async Task A_receiver_that_never_answers_is_timed_out_and_retried_and_deleting_the_webhook_stops_it()
    {
        var client = await TrainKeyAsync("hooks-silent");
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Silent = true;
        var webhook = await CreateAsync(client, receiver.Url, "training-job.failed");
        var accepted = await (
            await client.PostAsync($"/api/webhooks/{webhook.Id}/test", null)
        ).ReadAsync<WebhookDeliveryResponse>();
        var delivery = await WaitForDeliveryAsync(client, webhook.Id, accepted.Id, d => d.Attempts.Count >= 2);
        Assert.Equal(DeliveryState.Pending, delivery.State);
        Assert.NotNull(delivery.NextAttemptAt);
        Assert.All(delivery.Attempts, a =>
        {
            Assert.Null(a.StatusCode);
            Assert.Equal("No answer within 2 s", a.Error);
            Assert.InRange(a.Milliseconds, 1900, 6000);
        });

        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync($"/api/webhooks/{webhook.Id}")).StatusCode);
        Assert.Equal(
            HttpStatusCode.NotFound,
            (await client.GetAsync($"/api/webhooks/{webhook.Id}/deliveries")).StatusCode
        );
        Assert.Equal(
            0,
            await factory.QueryAsync(db => db.WebhookDeliveries.CountAsync(d => d.WebhookId == webhook.Id))
        );
    }

    [Fact]
    public async Task A_secret_that_cannot_be_decrypted_fails_its_delivery_at_once_saying_why()
    {
        var client = await TrainKeyAsync("hooks-lost-secret");
        await using var receiver = await WebhookReceiver.StartAsync();
        var webhook = await CreateAsync(client, receiver.Url, "training-job.failed");
        // As after a change of Secrets:KeyEncryptionKey: the stored secret no longer opens.
        var stored = await factory.QueryAsync(db =>
            db.Webhooks.IgnoreQueryFilters().Where(w => w.Id == webhook.Id).Select(w => w.ProtectedSecret).SingleAsync()
        );
        var tampered = stored[..40] + (stored[40] == 'A' ? 'B' : 'A') + stored[41..];
        await factory.QueryAsync(db =>
            db.Webhooks.IgnoreQueryFilters()
                .Where(w => w.Id == webhook.Id)
                .ExecuteUpdateAsync(s => s.SetProperty(w => w.ProtectedSecret, tampered))
        );
        var accepted = await (
            await client.PostAsync($"/api/webhooks/{webhook.Id}/test", null)
        ).ReadAsync<WebhookDeliveryResponse>();
        var delivery = await WaitForDeliveryAsync(client, webhook.Id, accepted.Id, d =>
            d.State != DeliveryState.Pending
        );
        Assert.Equal(DeliveryState.Failed, delivery.State);
        Assert.Contains("cannot be decrypted", Assert.Single(delivery.Attempts).Error, StringComparison.Ordinal);
        Assert.Empty(receiver.All);
    }

    [Fact]
    public async Task Refused_webhooks_name_the_field_at_fault_and_store_nothing()
    {
        var client = await TrainKeyAsync("hooks-refused");
        var events = new[] { "training-job.succeeded" };
        foreach (
            var url in new[] { "not a url", "/relative/path", "ftp://127.0.0.1/hook", "http://user:pw@127.0.0.1/h", "" }
        )
        {
            var refused = await client.PostAsJsonAsync("/api/webhooks", new { url, events });
            Assert.Equal(HttpStatusCode.UnprocessableEntity, refused.StatusCode);
            Assert.True((await refused.ProblemAsync()).GetProperty("errors").TryGetProperty("url", out _), url);
        }
        var unknown = await client.PostAsJsonAsync(
            "/api/webhooks",
            new { url = "http://127.0.0.1/h", events = new[] { "training-job.succeeded", "training-job.exploded" } }
        );
        Assert.Equal(HttpStatusCode.BadRequest, unknown.StatusCode);
        Assert.Contains(
            "'training-job.exploded'",
            (await unknown.ProblemAsync()).GetProperty("errors").GetProperty("events")[0].GetString()
        );
        var none = await client.PostAsJsonAsync(
            "/api/webhooks",
            new { url = "http://127.0.0.1/h", events = Array.Empty<string>() }
        );
        Assert.Equal(HttpStatusCode.BadRequest, none.StatusCode);
        var predictOnly = factory.CreateClient(await admin.CreateKeyAsync(KeyScope.Predict, "hooks-refused"));
        Assert.Equal(
            HttpStatusCode.Forbidden,
            (await predictOnly.PostAsJsonAsync("/api/webhooks", new { url = "http://127.0.0.1/h", events })).StatusCode
        );
        Assert.Equal(
            0,
            await factory.QueryAsync(db =>
                db.Webhooks.IgnoreQueryFilters().CountAsync(w => w.Tenant == "hooks-refused")
            )
        );
    }

    [Fact]
    public async Task A_retried_create_answers_the_same_webhook_and_no_stored_row_reveals_its_secret()
    {
        var client = await TrainKeyAsync("hooks-idempotent");
        var key = Guid.NewGuid().ToString();
        HttpRequestMessage Create()
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/api/webhooks")
            {
                Content = JsonContent.Create(
                    new { url = "http://127.0.0.1:9/h", events = new[] { "model.alias.moved" } }
                ),
            };
            request.Headers.Add("Idempotency-Key", key);
            return request;
        }
        var first = await (await client.SendAsync(Create())).ReadAsync<WebhookResponse>();
        var retry = await client.SendAsync(Create());
        Assert.Equal("true", retry.Headers.GetValues("Idempotent-Replayed").Single());
        var replayed = await retry.ReadAsync<WebhookResponse>();
        Assert.Equal((first.Id, first.Secret), (replayed.Id, replayed.Secret));
        Assert.Equal(
            1,
            await factory.QueryAsync(db =>
                db.Webhooks.IgnoreQueryFilters().CountAsync(w => w.Tenant == "hooks-idempotent")
            )
        );

        // What a dump holds: the webhook row, the kept answer and the key ring, none of them readable.
        var secret = Encoding.UTF8.GetBytes(first.Secret!);
        var (protectedSecret, keptAnswer, keyRing) = await factory.QueryAsync(async db =>
            (
                (await db.Webhooks.IgnoreQueryFilters().SingleAsync(w => w.Id == first.Id)).ProtectedSecret,
                (await db.IdempotencyRecords.SingleAsync(r => r.Tenant == "hooks-idempotent" && r.Key == key)).Body!,
                await db.DataProtectionKeys.Select(k => k.Xml!).ToListAsync()
            )
        );
        Assert.DoesNotContain(first.Secret!, protectedSecret, StringComparison.Ordinal);
        Assert.True(keptAnswer.AsSpan().IndexOf(secret) < 0, "the kept answer holds the secret in clear");
        Assert.True(keptAnswer.AsSpan().IndexOf("whsec_"u8) < 0);
        Assert.NotEmpty(keyRing);
        Assert.All(keyRing, xml =>
        {
            Assert.Contains("transferApiEncryptedKey", xml, StringComparison.Ordinal);
            Assert.DoesNotContain("<masterKey", xml, StringComparison.Ordinal);
        });
    }
}
