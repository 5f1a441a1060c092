using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;

namespace TransferApi.Services;

/// <summary>A tenant at its limit of queued jobs: how many it has and when one will likely have started.</summary>
public sealed record QueueFull(int Queued, int RetryAfterSeconds);

/// <summary>A tenant whose stored bytes plus an upload would pass its storage quota.</summary>
public sealed record StorageFull(long StoredBytes, long IncomingBytes, long QuotaBytes);

/// <summary>The per-tenant limits of <see cref="QuotaOptions"/>, checked inside the caller's transaction.</summary>
public sealed class TenantQuotas(IOptions<QuotaOptions> options)
{
    private const int DefaultRetryAfterSeconds = 30;

    /// <summary>
    /// Null when the context's tenant may queue one more job. Takes the tenant's job lock to the transaction's
    /// end, so concurrent requests count each other's jobs and the limit holds exactly.
    /// </summary>
    public async Task<QueueFull?> QueuedJobsOverLimitAsync(TransferDbContext db, CancellationToken cancellation)
    {
        if (options.Value.MaxQueuedJobsPerTenant is not { } max)
            return null;
        await RowLocks.AdvisoryAsync(db, RowLocks.TenantJobs(db.Tenant ?? ""), shared: false, cancellation);
        var queued = await db.TrainingJobs.CountAsync(j => j.Status == JobStatus.Queued, cancellation);
        if (queued < max)
            return null;
        // A queued job starts when one ends: the tenant's recent jobs say how long that takes.
        var recent = await db
            .TrainingJobs.Where(j => j.StartedAt != null && j.FinishedAt != null)
            .OrderByDescending(j => j.FinishedAt)
            .Take(20)
            .Select(j => new { j.StartedAt, j.FinishedAt })
            .ToListAsync(cancellation);
        var seconds =
            recent.Count == 0
                ? DefaultRetryAfterSeconds
                : recent.Average(j => (j.FinishedAt!.Value - j.StartedAt!.Value).TotalSeconds);
        return new QueueFull(queued, (int)Math.Clamp(Math.Ceiling(seconds), 1, 3600));
    }

    /// <summary>
    /// Null when <paramref name="incomingBytes"/> more fit the context's tenant's storage quota (images and models).
    /// Call it just before committing an upload, inside its transaction: the tenant's lock makes concurrent uploads
    /// count each other.
    /// </summary>
    public async Task<StorageFull?> StorageOverLimitAsync(
        TransferDbContext db,
        long incomingBytes,
        CancellationToken cancellation
    )
    {
        if (options.Value.MaxStoredBytesPerTenant is not { } quota)
            return null;
        await RowLocks.AdvisoryAsync(db, RowLocks.TenantStorage(db.Tenant ?? ""), shared: false, cancellation);
        var images = await db.DatasetImages.SumAsync(i => (long)i.SizeBytes, cancellation);
        var models = await db.Models.SumAsync(
            m =>
                (long)m.HeadWeights.Length
                + (m.TailWeights == null ? 0 : m.TailWeights.Length)
                + (m.NoveltyBank == null ? 0 : m.NoveltyBank.Length * sizeof(float)),
            cancellation
        );
        var stored = images + models - incomingBytes;
        return images + models > quota ? new StorageFull(stored, incomingBytes, quota) : null;
    }
}
