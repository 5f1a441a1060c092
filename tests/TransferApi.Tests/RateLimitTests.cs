using System.Net;
using TransferApi.Persistence;

namespace TransferApi.Tests;

/// <summary>Predict and upload allowances per key: beyond them a 429 with Retry-After; other keys keep
/// theirs.</summary>
[Collection(ServiceCollection.Name)]
public class RateLimitTests
{
    [Fact]
    public async Task Beyond_its_allowance_a_key_gets_429_with_retry_after_and_other_keys_are_unaffected()
    {
        // A service process of its own with small allowances (a second in-process host would share Hangfire's
        // static configuration with the tests' host): 2 predictions and 1 upload per minute and key.
        await using var service = await ServiceProcess.StartAsync(
            TransferApiFactory.AdminConnection,
            new Dictionary<string, string>
            {
                ["RateLimits__PredictPerMinute"] = "2",
                ["RateLimits__UploadsPerMinute"] = "1",
                ["Service__Roles"] = "Api",
            }
        );
        HttpClient Client(string key)
        {
            var client = new HttpClient { BaseAddress = service.Client.BaseAddress };
            client.DefaultRequestHeaders.Add("X-Api-Key", key);
            return client;
        }
        var admin = service.Client;
        var first = Client(await admin.CreateKeyAsync(KeyScope.Train));
        var second = Client(await admin.CreateKeyAsync(KeyScope.Predict));

        var route = $"/api/models/{Guid.NewGuid()}/predict";
        for (var i = 0; i < 2; i++)
        {
            var allowed = await first.PostAsync(route, Archives.ImageForm([1, 2, 3]));
            Assert.True(
                allowed.StatusCode == HttpStatusCode.NotFound,
                $"request {i + 1}: {allowed.StatusCode} {await allowed.Content.ReadAsStringAsync()}"
            );
        }
        var refused = await first.PostAsync(route, Archives.ImageForm([1, 2, 3]));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.True(
            refused.Headers.RetryAfter?.Delta is { TotalSeconds: >= 1 and <= 60 },
            $"Retry-After {refused.Headers.RetryAfter}"
        );
        Assert.Contains("retry after", (await refused.ProblemAsync()).GetProperty("detail").GetString());
        var other = await second.PostAsync(route, Archives.ImageForm([1, 2, 3]));
        Assert.True(
            other.StatusCode == HttpStatusCode.NotFound,
            $"another key: {other.StatusCode} {await other.Content.ReadAsStringAsync()}"
        );

        // Uploads have their own allowance: the second upload within the minute is refused before it is read.
        Assert.NotEqual(
            HttpStatusCode.TooManyRequests,
            (await first.PostAsync("/api/datasets", Archives.DatasetForm("a", [1, 2, 3]))).StatusCode
        );
        var upload = await first.PostAsync("/api/datasets", Archives.DatasetForm("b", [1, 2, 3]));
        Assert.Equal(HttpStatusCode.TooManyRequests, upload.StatusCode);
        Assert.NotNull(upload.Headers.RetryAfter);
        // Reading lists is not limited.
        Assert.Equal(HttpStatusCode.OK, (await first.GetAsync("/api/datasets")).StatusCode);
    }
}
