using System.Net;
using System.Net.Http.Json;
using TransferApi.Features.Keys;
using TransferApi.Persistence;

namespace TransferApi.Tests;

/// <summary>Every /api route needs an X-Api-Key whose scope covers it; health checks and Swagger need none.</summary>
[Collection(ServiceCollection.Name)]
public class AuthenticationTests(TransferApiFactory factory)
{
    private readonly HttpClient admin = factory.CreateClient();

    private Task<string> KeyAsync(KeyScope scope, string tenant = "default") => admin.CreateKeyAsync(scope, tenant);

    [Fact]
    public async Task Without_a_valid_key_api_routes_answer_401_and_health_and_swagger_stay_open()
    {
        var anonymous = factory.CreateClient(key: null);
        foreach (
            var route in new[] { "/api/datasets", "/api/training-jobs", "/api/models", "/api/backbones", "/api/keys" }
        )
        {
            var response = await anonymous.GetAsync(route);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Contains("X-Api-Key", (await response.ProblemAsync()).GetProperty("detail").GetString());
        }
        var wrong = await factory.CreateClient("tak_not-a-key").GetAsync("/api/datasets");
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.Contains("not known", (await wrong.ProblemAsync()).GetProperty("detail").GetString());

        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/health/ready")).StatusCode);
        var openApi = await anonymous.GetStringAsync("/swagger/v1/swagger.json");
        Assert.Contains("\"X-Api-Key\"", openApi);
        Assert.Contains("\"securitySchemes\"", openApi);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/swagger/index.html")).StatusCode);
    }

    [Fact]
    public async Task Scopes_nest_predict_within_train_within_admin()
    {
        var predict = factory.CreateClient(await KeyAsync(KeyScope.Predict));
        var train = factory.CreateClient(await KeyAsync(KeyScope.Train));
        var model = Guid.NewGuid();

        // Predict reaches predict (404: no such model) and the backbone list, nothing else.
        Assert.Equal(
            HttpStatusCode.NotFound,
            (await predict.PostAsync($"/api/models/{model}/predict", Archives.ImageForm([1, 2, 3]))).StatusCode
        );
        Assert.Equal(HttpStatusCode.OK, (await predict.GetAsync("/api/backbones")).StatusCode);
        foreach (
            var route in new[]
            {
                "/api/datasets",
                "/api/training-jobs",
                "/api/models",
                $"/api/models/{model}",
                "/api/keys",
            }
        )
        {
            var response = await predict.GetAsync(route);
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            Assert.Contains("scope is Predict", (await response.ProblemAsync()).GetProperty("detail").GetString());
        }

        // Train adds data sets, jobs and models, but not keys or backbone registration.
        foreach (var route in new[] { "/api/datasets", "/api/training-jobs", "/api/models" })
            Assert.Equal(HttpStatusCode.OK, (await train.GetAsync(route)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await train.GetAsync("/api/keys")).StatusCode);
        Assert.Equal(
            HttpStatusCode.Forbidden,
            (await train.PostAsJsonAsync("/api/keys", new { name = "x", scope = "Admin" })).StatusCode
        );
        Assert.Equal(
            HttpStatusCode.Forbidden,
            (await train.DeleteAsync("/api/backbones/resnet18-imagenet")).StatusCode
        );

        // The Hangfire dashboard is for admin keys only.
        Assert.Equal(
            HttpStatusCode.Unauthorized,
            (await factory.CreateClient(key: null).GetAsync("/hangfire")).StatusCode
        );
        Assert.Equal(HttpStatusCode.Unauthorized, (await train.GetAsync("/hangfire")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync("/hangfire")).StatusCode);
    }

    [Fact]
    public async Task Keys_are_listed_without_secrets_and_a_revoked_key_stops_working()
    {
        var secret = await KeyAsync(KeyScope.Train, tenant: "acme");
        var client = factory.CreateClient(secret);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/datasets")).StatusCode);

        var listed = await (await admin.GetAsync("/api/keys")).ReadAsync<List<KeyResponse>>();
        var key = Assert.Single(listed, k => secret.StartsWith(k.Prefix, StringComparison.Ordinal));
        Assert.Null(key.Key);
        Assert.DoesNotContain(secret, await (await admin.GetAsync("/api/keys")).Content.ReadAsStringAsync());
        var stored = await factory.QueryAsync(db => Task.FromResult(db.ApiKeys.Single(k => k.Id == key.Id)));
        Assert.Equal(
            System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(secret)),
            stored.Sha256
        );

        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/keys/{key.Id}")).StatusCode);
        // Looked-up keys are trusted for Auth:KeyCacheDuration (10 s by default).
        var deadline = DateTime.UtcNow.AddSeconds(15);
        HttpResponseMessage response;
        while (
            (response = await client.GetAsync("/api/datasets")).StatusCode == HttpStatusCode.OK
            && DateTime.UtcNow < deadline
        )
            await Task.Delay(250);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Contains("revoked", (await response.ProblemAsync()).GetProperty("detail").GetString());
        Assert.Equal(HttpStatusCode.NotFound, (await admin.DeleteAsync($"/api/keys/{Guid.NewGuid()}")).StatusCode);

        var invalid = await admin.PostAsJsonAsync(
            "/api/keys",
            new
            {
                name = "",
                tenant = "Not A Tenant",
                scope = "root",
            }
        );
        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);
        await invalid.ProblemAsync();
    }

    [Theory]
    [InlineData("Auth:BootstrapAdminKey")]
    [InlineData("Secrets:KeyEncryptionKey")]
    public async Task Outside_Development_the_service_refuses_to_start_without_its_keys(string missing)
    {
        // Its own process: a failed in-process host would leave Hangfire's static configuration half made.
        var start = new System.Diagnostics.ProcessStartInfo(
            "dotnet",
            [Path.Combine(AppContext.BaseDirectory, "TransferApi.dll")]
        )
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        start.Environment["ConnectionStrings__Postgres"] = factory.ConnectionString;
        start.Environment["ASPNETCORE_URLS"] = "http://127.0.0.1:0";
        start.Environment["Service__Roles"] = "Api";
        start.Environment["Auth__BootstrapAdminKey"] = factory.AdminKey;
        start.Environment["Secrets__KeyEncryptionKey"] = factory.KeyEncryptionKey;
        start.Environment.Remove(missing.Replace(":", "__", StringComparison.Ordinal));
        using var process = System.Diagnostics.Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        Assert.NotEqual(0, process.ExitCode);
        Assert.Contains(missing, await output + await errors);
    }
}
