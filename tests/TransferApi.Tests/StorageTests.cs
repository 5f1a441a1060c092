using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using Npgsql;
using TransferApi.Features.Datasets;
using TransferApi.Features.Storage;
using TransferApi.Features.TrainingJobs;
using TransferApi.Http;
using TransferApi.Persistence;
using TransferApi.Services;
using Xunit.Abstractions;

namespace TransferApi.Tests;

/// <summary>
/// Checkpoints are the largest and shortest-lived rows the service writes. Written after every epoch here (the
/// worst case), they must not leave the database larger on disk than 1.5x its live data; GET /api/storage and
/// the gauges show where the space goes, and a tenant's storage quota refuses an upload over it whole.
/// </summary>
public class StorageTests(ITestOutputHelper output)
{
    private const long Quota = 24_000_000;
    private const string CheckpointBytesMetric = "transferapi_training_checkpoint_written_bytes_total";

    [Fact]
    public async Task Replaced_checkpoints_are_reclaimed_storage_is_reported_and_the_quota_refuses_uploads_over_it()
    {
        await using var service = await ServiceProcess.StartAsync(
            TransferApiFactory.AdminConnection,
            new Dictionary<string, string>
            {
                ["Worker__CheckpointInterval"] = "00:00:00",
                ["Worker__QueuePollInterval"] = "00:00:00.5",
                ["Quotas__MaxStoredBytesPerTenant"] = Quota.ToString(CultureInfo.InvariantCulture),
            }
        );
        var client = service.Client;
        // About 19 MB of images: live data well above PostgreSQL's own catalogs (8 MB), so the ratio below says
        // something.
        var images = Enumerable
            .Range(0, 96)
            .Select(i => ($"{(i % 2 == 0 ? "even" : "odd")}/{i}.png", Archives.NoisePng(256, 256, 11_000 + i)))
            .ToList();
        var dataset = await (
            await client.PostAsync("/api/datasets", Archives.DatasetForm("storage", Archives.Zip(images)))
        ).ReadAsync<DatasetResponse>();
        var imageBytes = images.Sum(i => (long)i.Item2.Length);

        // A second upload as large would pass the quota: refused whole, with the numbers, and nothing stored.
        var more = Enumerable
            .Range(0, 48)
            .Select(i => ($"{(i % 2 == 0 ? "even" : "odd")}/{i}.png", Archives.NoisePng(256, 256, 12_000 + i)))
            .ToList();
        var refused = await client.PostAsync("/api/datasets", Archives.DatasetForm("over quota", Archives.Zip(more)));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, refused.StatusCode);
        var detail = (await refused.ProblemAsync()).GetProperty("detail").GetString()!;
        Assert.Contains($"its quota is {Quota:N0} bytes", detail);
        Assert.Equal(1, (await (await client.GetAsync("/api/datasets")).ReadAsync<Page<DatasetResponse>>()).TotalCount);

        // A frozen-backbone job caches the images' features (fine-tuning does not: it keeps activations in memory).
        var frozen = await (
            await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 1 })
        ).ReadAsync<TrainingJobResponse>();
        Assert.Equal(
            JobStatus.Succeeded,
            (await client.WaitForJobAsync(frozen.Id, JobPolling.Ended, seconds: 300)).Status
        );

        // Fine-tuning the last stage writes a checkpoint of the stage, Adam's moments and the best copy after every
        // epoch.
        var job = await (
            await client.PostAsJsonAsync(
                "/api/training-jobs",
                new
                {
                    datasetId = dataset.Id,
                    epochs = 2,
                    unfreezeStages = 1,
                    fineTuneEpochs = 3,
                    batchSize = 16,
                }
            )
        ).ReadAsync<TrainingJobResponse>();
        Assert.Equal(
            JobStatus.Succeeded,
            (await client.WaitForJobAsync(job.Id, JobPolling.Ended, seconds: 300)).Status
        );
        var written = new PrometheusText(await client.GetStringAsync("/metrics")).Sum(CheckpointBytesMetric);

        // The worker vacuums the table right after the job's last commit: give it the moment that takes.
        var settled = System.Diagnostics.Stopwatch.StartNew();
        StorageReportResponse storage;
        TableUsageResponse checkpoints;
        do
        {
            storage = await (await client.GetAsync("/api/storage")).ReadAsync<StorageReportResponse>();
            checkpoints = storage.Tables.Single(t => t.Table == "training_checkpoints");
        } while (checkpoints.Bytes >= written / 20 && settled.Elapsed < TimeSpan.FromSeconds(30) && await Delay());
        // The report reads the database's size just before the tables' sizes: the reading that first saw the table
        // vacuumed may have sized the database a moment before the vacuum returned its pages. Read once more.
        storage = await (await client.GetAsync("/api/storage")).ReadAsync<StorageReportResponse>();
        checkpoints = storage.Tables.Single(t => t.Table == "training_checkpoints");
        output.WriteLine($"checkpoint space returned {settled.Elapsed.TotalSeconds:F1} s after the job ended");
        foreach (var line in service.Output.Where(l => l.Contains("checkpoint table", StringComparison.Ordinal)))
            output.WriteLine(line);
        var tenant = storage.Tenants.Single(t => t.Tenant == "default");
        Assert.Equal((imageBytes, 0L), (tenant.ImageBytes, tenant.CheckpointBytes));
        Assert.True(tenant.ModelBytes > 0 && tenant.FeatureBytes > 0, $"{tenant}");
        Assert.Equal(Quota, tenant.QuotaBytes);
        Assert.Equal("images", storage.Tables.Single(t => t.Table == "dataset_images").Holds);

        foreach (var table in storage.Tables.Take(6))
            output.WriteLine(
                $"{table.Table}: {table.Bytes / 1e6:N1} MB, {table.LiveRows} live, {table.DeadRows} dead rows"
            );
        var onDisk = storage.DatabaseBytes;
        var live = await LiveBytesAsync(service.ConnectionString, output);
        output.WriteLine(
            $"checkpoints written {written / 1e6:N1} MB; checkpoint table now {checkpoints.Bytes / 1e3:N0} kB "
                + $"({checkpoints.DeadRows} dead rows); "
                + $"database {onDisk / 1e6:N1} MB on disk, {live / 1e6:N1} MB after VACUUM FULL "
                + $"({(double)onDisk / live:F2}x)"
        );
        Assert.True(
            written > 2 * live,
            $"the job wrote only {written:N0} bytes of checkpoints: too little to show their space is reclaimed"
        );
        Assert.True(onDisk <= 1.5 * live, $"{onDisk:N0} bytes on disk for {live:N0} bytes of live data");
        // Vacuum returns the table's trailing pages; what stays is a few percent of one checkpoint, reused by the next.
        Assert.True(
            checkpoints.Bytes < written / 20,
            $"the checkpoint table holds {checkpoints.Bytes:N0} bytes with no job running"
        );

        // The same figures as gauges.
        var metrics = await client.GetStringAsync("/metrics");
        Assert.Matches("transferapi_storage_table_size_bytes\\{[^}]*table=\"dataset_images\"", metrics);
        Assert.Matches("transferapi_storage_tenant_size_bytes\\{[^}]*kind=\"images\"[^}]*tenant=\"default\"", metrics);
    }

    private static async Task<bool> Delay()
    {
        // Not too often: each reading of the report asks for a lock on the checkpoint table, and a vacuum gives up
        // returning the table's tail whenever someone waits for one (in the full suite, 200 ms polls starved it).
        await Task.Delay(1500);
        return true;
    }

    /// <summary>The database's size once rewritten compactly: its live data as PostgreSQL stores it.</summary>
    private static async Task<long> LiveBytesAsync(string connectionString, ITestOutputHelper output)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using (
            var largest = new NpgsqlCommand(
                """
                SELECT f || ' -> ' || COALESCE(pg_filenode_relation(0, NULLIF(regexp_replace(f, '[^0-9].*$', ''),
                    '')::oid)::text, '?'), 'f',
                       (pg_stat_file('base/' || d.oid || '/' || f)).size
                FROM pg_database d, pg_ls_dir('base/' || d.oid) f WHERE d.datname = current_database() ORDER BY 3 DESC
                    LIMIT 6
                """,
                connection
            )
        )
        await using (var rows = await largest.ExecuteReaderAsync())
            while (await rows.ReadAsync())
                output.WriteLine($"  {rows.GetString(0)} ({rows.GetChar(1)}): {rows.GetInt64(2) / 1e6:N1} MB");
        await using (var vacuum = new NpgsqlCommand("VACUUM FULL", connection) { CommandTimeout = 300 })
            await vacuum.ExecuteNonQueryAsync();
        await using var size = new NpgsqlCommand("SELECT pg_database_size(current_database())", connection);
        return (long)(await size.ExecuteScalarAsync())!;
    }
}
