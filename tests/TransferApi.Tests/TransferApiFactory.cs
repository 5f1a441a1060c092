using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TransferApi.Persistence;

namespace TransferApi.Tests;

/// <summary>
/// The whole service (API + Hangfire worker) in-process against a fresh database on the real PostgreSQL that
/// scripts/test.sh starts (TRANSFERAPI_TEST_POSTGRES). One per test run: Hangfire keeps process-wide state.
/// </summary>
public sealed class TransferApiFactory : WebApplicationFactory<Program>, IAsyncLifetime
{
    /// <summary>Limits lowered so tests can cross them cheaply.</summary>
    public const long MaxRequestBytes = 48L * 1024 * 1024;
    public const int MaxEntries = 1000;
    public const long MaxImagePixels = 6_000_000; // the largest ants-bees photo has 5.04 M
    public const long MaxEntryBytes = 4L * 1024 * 1024; // the largest ants-bees photo has 2.1 MB
    public const long MaxTotalBytes = 32L * 1024 * 1024;

    private readonly string adminConnection = AdminConnection;

    /// <summary>A superuser connection to the PostgreSQL that scripts/test.sh starts.</summary>
    public static string AdminConnection =>
        Environment.GetEnvironmentVariable("TRANSFERAPI_TEST_POSTGRES") is { Length: > 0 } configured
            ? configured
            : throw new InvalidOperationException(
                "TRANSFERAPI_TEST_POSTGRES is not set: run the tests with ./scripts/test.sh, which starts PostgreSQL."
            );
    private readonly string database = $"transferapi_test_{Guid.NewGuid():N}";

    public string ConnectionString =>
        new NpgsqlConnectionStringBuilder(adminConnection) { Database = database }.ConnectionString;

    public async Task InitializeAsync()
    {
        await using var connection = new NpgsqlConnection(adminConnection);
        await connection.OpenAsync();
        await using var create = new NpgsqlCommand($"CREATE DATABASE \"{database}\"", connection);
        await create.ExecuteNonQueryAsync();
    }

    /// <summary>Encrypts this test service's Data Protection key ring.</summary>
    public string KeyEncryptionKey { get; } =
        Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));

    /// <summary>The bootstrap admin key of this test service; <see cref="CreateClient"/> clients send it.</summary>
    public string AdminKey { get; } = $"test-admin-{Guid.NewGuid():N}";

    /// <summary>A client that sends no key, or <paramref name="key"/>.</summary>
    public HttpClient CreateClient(string? key)
    {
        var client = CreateClient();
        client.DefaultRequestHeaders.Remove("X-Api-Key");
        if (key is not null)
            client.DefaultRequestHeaders.Add("X-Api-Key", key);
        return client;
    }

    protected override void ConfigureClient(HttpClient client)
    {
        base.ConfigureClient(client);
        client.DefaultRequestHeaders.Add("X-Api-Key", AdminKey);
    }

    public const long ActivationMemoryBytes = 1 << 20;

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        builder.UseSetting("Auth:BootstrapAdminKey", AdminKey);
        builder.UseSetting("Secrets:KeyEncryptionKey", KeyEncryptionKey);
        // The receivers tests start listen on loopback; WebhookAddressTests checks the refusals this lifts. Retries
        // come in seconds, not minutes.
        builder.UseSetting("Webhooks:AllowPrivateNetworks", "true");
        builder.UseSetting("Webhooks:Timeout", "00:00:02");
        builder.UseSetting("Webhooks:FirstRetryDelay", "00:00:01");
        builder.UseSetting("Webhooks:SchedulePollingInterval", "00:00:00.5");
        // Tests share one key; RateLimitTests checks the allowances with small ones of its own.
        builder.UseSetting("RateLimits:PredictPerMinute", "10000000");
        builder.UseSetting("RateLimits:UploadsPerMinute", "100000");
        builder.UseSetting("ConnectionStrings:Postgres", ConnectionString);
        builder.UseSetting("Service:MigrateOnStartup", "true");
        builder.UseSetting("Worker:QueuePollInterval", "00:00:00.5");
        // The float32 path on every machine: tests compare answers to the last decimals (exports, reports), and
        // bfloat16, where Auto would choose it, moves them in the third. The choice itself is tested in the core.
        builder.UseSetting("Backbones:Precision", "Fp32");
        // Fine-tuning jobs here hold a few megabytes of activations: a small budget sends them through a spill file.
        builder.UseSetting(
            "Worker:ActivationMemoryBytes",
            ActivationMemoryBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)
        );
        builder.UseSetting(
            "Uploads:MaxRequestBytes",
            MaxRequestBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)
        );
        builder.UseSetting(
            "Uploads:MaxEntries",
            MaxEntries.ToString(System.Globalization.CultureInfo.InvariantCulture)
        );
        builder.UseSetting(
            "Uploads:MaxImagePixels",
            MaxImagePixels.ToString(System.Globalization.CultureInfo.InvariantCulture)
        );
        builder.UseSetting(
            "Uploads:MaxEntryBytes",
            MaxEntryBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)
        );
        builder.UseSetting(
            "Uploads:MaxTotalBytes",
            MaxTotalBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)
        );
        // Small batches, so refused uploads have already written rows that the rollback must remove.
        builder.UseSetting("Datasets:IngestBatchSize", "2");
    }

    public async Task<T> QueryAsync<T>(Func<TransferDbContext, Task<T>> query)
    {
        await using var scope = Services.CreateAsyncScope();
        await using var db = await scope
            .ServiceProvider.GetRequiredService<IDbContextFactory<TransferDbContext>>()
            .CreateDbContextAsync();
        return await query(db);
    }

    /// <summary>Rows of data sets and images, to prove a refused upload stored nothing.</summary>
    public Task<(int Datasets, int Images)> CountDatasetRowsAsync() =>
        QueryAsync(async db => (await db.Datasets.CountAsync(), await db.DatasetImages.CountAsync()));

    async Task IAsyncLifetime.DisposeAsync()
    {
        await DisposeAsync();
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(adminConnection);
        await connection.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)", connection);
        await drop.ExecuteNonQueryAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class ServiceCollection : ICollectionFixture<TransferApiFactory>
{
    public const string Name = "service against PostgreSQL";
}
