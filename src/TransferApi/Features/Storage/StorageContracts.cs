using TransferApi.Services;

namespace TransferApi.Features.Storage;

/// <param name="Table">The table's name.</param>
/// <param name="Holds">What it holds: images, features, models, checkpoints, backbones, jobs or metadata.</param>
/// <param name="Bytes">Its size on disk with indexes and TOAST (what a dump or a volume pays for).</param>
/// <param name="LiveRows">Rows in use (PostgreSQL's estimate).</param>
/// <param name="DeadRows">Deleted or replaced rows whose space a vacuum has not yet made reusable (estimate).</param>
public sealed record TableUsageResponse(string Table, string Holds, long Bytes, long LiveRows, long DeadRows);

/// <param name="Tenant">The tenant.</param>
/// <param name="ImageBytes">Encoded images in the tenant's data sets.</param>
/// <param name="ModelBytes">Trained heads and fine-tuned stages of the tenant's models.</param>
/// <param name="CheckpointBytes">Crash-recovery checkpoints of the tenant's running jobs.</param>
/// <param name="FeatureBytes">
/// Cached backbone features of the tenant's images (shared with any tenant holding the same image).
/// </param>
/// <param name="StoredBytes">What the storage quota counts: images and models.</param>
/// <param name="QuotaBytes">Quotas:MaxStoredBytesPerTenant, or null without a quota.</param>
public sealed record TenantUsageResponse(
    string Tenant,
    long ImageBytes,
    long ModelBytes,
    long CheckpointBytes,
    long FeatureBytes,
    long StoredBytes,
    long? QuotaBytes
);

/// <param name="MeasuredAt">When the figures were measured (UTC).</param>
/// <param name="DatabaseBytes">The whole database on disk.</param>
/// <param name="Tables">Each table's size and rows, largest first.</param>
/// <param name="Tenants">Each tenant's stored bytes.</param>
public sealed record StorageReportResponse(
    DateTime MeasuredAt,
    long DatabaseBytes,
    IReadOnlyList<TableUsageResponse> Tables,
    IReadOnlyList<TenantUsageResponse> Tenants
);

public static class StorageMapping
{
    public static StorageReportResponse ToResponse(this StorageReport report) =>
        new(
            report.MeasuredAt,
            report.DatabaseBytes,
            report
                .Tables.Select(t => new TableUsageResponse(t.Table, t.Holds, t.Bytes, t.LiveRows, t.DeadRows))
                .ToList(),
            report
                .Tenants.Select(t => new TenantUsageResponse(
                    t.Tenant,
                    t.ImageBytes,
                    t.ModelBytes,
                    t.CheckpointBytes,
                    t.FeatureBytes,
                    t.StoredBytes,
                    t.QuotaBytes
                ))
                .ToList()
        );
}
