using System.Diagnostics.Metrics;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;

namespace TransferApi.Services;

/// <param name="Table">The table (or "hangfire" for Hangfire's whole schema).</param>
/// <param name="Holds">What it holds: images, features, models, checkpoints, backbones, jobs or metadata.</param>
/// <param name="Bytes">Its size on disk with indexes and TOAST (what a dump or a volume pays for).</param>
/// <param name="LiveRows">Rows in use (PostgreSQL's estimate).</param>
/// <param name="DeadRows">Deleted or replaced rows whose space a vacuum has not yet made reusable (estimate).</param>
public sealed record TableUsage(string Table, string Holds, long Bytes, long LiveRows, long DeadRows);

/// <param name="ImageBytes">Encoded images in the tenant's data sets.</param>
/// <param name="ModelBytes">Trained heads and fine-tuned stages of the tenant's models.</param>
/// <param name="CheckpointBytes">Crash-recovery checkpoints of the tenant's running jobs.</param>
/// <param name="FeatureBytes">Cached backbone features of the tenant's images (shared with any tenant holding the same
/// image).</param>
/// <param name="StoredBytes">What the storage quota counts: images and models.</param>
/// <param name="QuotaBytes">Quotas:MaxStoredBytesPerTenant, or null without a quota.</param>
public sealed record TenantUsage(
    string Tenant,
    long ImageBytes,
    long ModelBytes,
    long CheckpointBytes,
    long FeatureBytes,
    long StoredBytes,
    long? QuotaBytes
);

/// <param name="DatabaseBytes">The whole database on disk.</param>
public sealed record StorageReport(
    DateTime MeasuredAt,
    long DatabaseBytes,
    IReadOnlyList<TableUsage> Tables,
    IReadOnlyList<TenantUsage> Tenants
);

/// <summary>
/// Where the database's space goes, by table and by tenant: GET /api/storage and the Prometheus gauges
/// transferapi.storage.table.size and transferapi.storage.tenant.size (measured at most every <see
/// cref="GaugeMaxAge"/>).
/// </summary>
public sealed class StorageUsage
{
    private static readonly TimeSpan GaugeMaxAge = TimeSpan.FromSeconds(30);

    private static readonly Dictionary<string, string> Holds = new()
    {
        ["dataset_images"] = "images",
        ["batch_prediction_images"] = "images",
        ["image_features"] = "features",
        ["models"] = "models",
        ["training_checkpoints"] = "checkpoints",
        ["backbone_weights"] = "backbones",
        ["training_jobs"] = "jobs",
        ["training_metrics"] = "jobs",
        ["hangfire"] = "jobs",
    };

    private readonly IDbContextFactory<TransferDbContext> dbFactory;
    private readonly IOptions<QuotaOptions> quotas;
    private readonly ILogger<StorageUsage> logger;
    private readonly Lock gate = new();
    private StorageReport? latest;

    public StorageUsage(
        IDbContextFactory<TransferDbContext> dbFactory,
        IOptions<QuotaOptions> quotas,
        IMeterFactory meters,
        ILogger<StorageUsage> logger
    )
    {
        (this.dbFactory, this.quotas, this.logger) = (dbFactory, quotas, logger);
        var meter = meters.Create(Telemetry.Name);
        meter.CreateObservableGauge(
            "transferapi.storage.table.size",
            () =>
                Recent()
                    ?.Tables.Select(t => new Measurement<long>(t.Bytes, new("table", t.Table), new("holds", t.Holds)))
                ?? [],
            "By",
            "Size on disk of each table (with indexes and TOAST); Hangfire's schema as one."
        );
        meter.CreateObservableGauge(
            "transferapi.storage.tenant.size",
            () =>
                Recent()
                    ?.Tenants.SelectMany(t =>
                        new[]
                        {
                            new Measurement<long>(t.ImageBytes, new("tenant", t.Tenant), new("kind", "images")),
                            new Measurement<long>(t.ModelBytes, new("tenant", t.Tenant), new("kind", "models")),
                            new Measurement<long>(
                                t.CheckpointBytes,
                                new("tenant", t.Tenant),
                                new("kind", "checkpoints")
                            ),
                            new Measurement<long>(t.FeatureBytes, new("tenant", t.Tenant), new("kind", "features")),
                        }
                    )
                ?? [],
            "By",
            "Bytes each tenant stores, by kind (images, models, checkpoints, features)."
        );
    }

    public async Task<StorageReport> MeasureAsync(CancellationToken cancellation)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellation);
        var database = await db
            .Database.SqlQuery<long>($"SELECT pg_database_size(current_database()) AS \"Value\"")
            .SingleAsync(cancellation);
        var tables = await db
            .Database.SqlQuery<TableRow>(
                $"""
                SELECT CASE WHEN s.schemaname = 'hangfire' THEN 'hangfire' ELSE s.relname END AS "Table",
                       SUM(pg_total_relation_size(s.relid))::bigint AS "Bytes", SUM(s.n_live_tup)::bigint AS
                           "LiveRows", SUM(s.n_dead_tup)::bigint AS "DeadRows"
                FROM pg_stat_user_tables s
                WHERE s.schemaname IN ('public', 'hangfire')
                GROUP BY 1 ORDER BY 2 DESC, 1
                """
            )
            .ToListAsync(cancellation);
        var tenants = await db
            .Database.SqlQuery<TenantRow>(
                $"""
                SELECT t."Tenant",
                  COALESCE((SELECT SUM(i."SizeBytes") FROM dataset_images i JOIN datasets d ON d."Id" = i."DatasetId"
                      WHERE d."Tenant" = t."Tenant"), 0)::bigint AS "ImageBytes",
                  COALESCE((SELECT SUM(octet_length(m."HeadWeights") + COALESCE(octet_length(m."TailWeights"), 0) +
                      4 * COALESCE(cardinality(m."NoveltyBank"), 0)) FROM models m WHERE m."Tenant" = t."Tenant"),
                      0)::bigint AS "ModelBytes",
                  COALESCE((SELECT SUM(octet_length(c."Data")) FROM training_checkpoints c JOIN training_jobs j ON
                      j."Id" = c."JobId" WHERE j."Tenant" = t."Tenant"), 0)::bigint AS "CheckpointBytes",
                  COALESCE((SELECT SUM(pg_column_size(f."Values")) FROM image_features f WHERE EXISTS (
                      SELECT 1 FROM dataset_images i JOIN datasets d ON d."Id" = i."DatasetId" WHERE d."Tenant" =
                          t."Tenant" AND i."Sha256" = f."Sha256")), 0)::bigint AS "FeatureBytes"
                FROM (SELECT "Tenant" FROM datasets UNION SELECT "Tenant" FROM training_jobs UNION SELECT "Tenant" FROM
                    models) t
                ORDER BY t."Tenant"
                """
            )
            .ToListAsync(cancellation);
        var quota = quotas.Value.MaxStoredBytesPerTenant;
        var report = new StorageReport(
            DateTime.UtcNow,
            database,
            tables
                .Select(t => new TableUsage(
                    t.Table,
                    Holds.GetValueOrDefault(t.Table, "metadata"),
                    t.Bytes,
                    t.LiveRows,
                    t.DeadRows
                ))
                .ToList(),
            tenants
                .Select(t => new TenantUsage(
                    t.Tenant,
                    t.ImageBytes,
                    t.ModelBytes,
                    t.CheckpointBytes,
                    t.FeatureBytes,
                    t.ImageBytes + t.ModelBytes,
                    quota
                ))
                .ToList()
        );
        lock (gate)
            latest = report;
        return report;
    }

    /// <summary>For the gauges: the last measurement, renewed when older than <see cref="GaugeMaxAge"/> (none while the
    /// database is away).</summary>
    private StorageReport? Recent()
    {
        lock (gate)
        {
            if (latest is not null && DateTime.UtcNow - latest.MeasuredAt < GaugeMaxAge)
                return latest;
        }
        try
        {
            // Scrapes are synchronous callbacks; the queries take milliseconds.
            return MeasureAsync(CancellationToken.None).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException or InvalidOperationException)
        {
            logger.LogWarning(e, "Measuring storage for metrics failed");
            return null;
        }
    }

    private sealed record TableRow(string Table, long Bytes, long LiveRows, long DeadRows);

    private sealed record TenantRow(
        string Tenant,
        long ImageBytes,
        long ModelBytes,
        long CheckpointBytes,
        long FeatureBytes
    );
}
