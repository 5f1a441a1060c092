using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;

namespace TransferApi.Services;

/// <summary>A tenant at its limit of queued jobs: how many it has and when one will likely have started.</summary>
public sealed record QueueFull(int Queued, int RetryAfterSeconds);

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
    /// Refuses an upload whole (413; the caller's transaction rolls back) when its <paramref name="incomingBytes"/>,
    /// already written in the transaction, take the context's tenant past its storage quota: data set images, zips
    /// waiting to be scored, and models. Call it just before committing: the tenant's lock makes concurrent uploads
    /// count each other.
    /// </summary>
    public async Task ThrowIfStorageOverLimitAsync(
        TransferDbContext db,
        long incomingBytes,
        CancellationToken cancellation
    )
    {
        if (options.Value.MaxStoredBytesPerTenant is not { } quota)
            return;
        await RowLocks.AdvisoryAsync(db, RowLocks.TenantStorage(db.Tenant ?? ""), shared: false, cancellation);
        var images = await db.DatasetImages.SumAsync(i => (long)i.SizeBytes, cancellation);
        var toScore = await db
            .BatchPredictionImages.Where(i => db.BatchPredictions.Any(b => b.Id == i.BatchId))
            .SumAsync(i => (long)i.Data.Length, cancellation);
        var models = await db.Models.SumAsync(
            m =>
                (long)m.HeadWeights.Length
                + (m.TailWeights == null ? 0 : m.TailWeights.Length)
                + (m.NoveltyBank == null ? 0 : m.NoveltyBank.Length * sizeof(float)),
            cancellation
        );
        var total = images + toScore + models;
        if (total > quota)
            throw new DomainException(
                ErrorKind.LimitExceeded,
                "Storage quota exceeded",
                $"file: this upload's {incomingBytes:N0} bytes of images would take the tenant to {total:N0} bytes "
                    + $"stored (images and models); its quota is {quota:N0} bytes. Delete data sets or models first."
            );
    }
}
