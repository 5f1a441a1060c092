using Microsoft.EntityFrameworkCore;

namespace TransferApi.Persistence;

/// <summary>
/// The locks that make check-then-act safe when another request can delete the row checked. Each is taken
/// inside the caller's transaction and held to its end. A row lock on a row deleted meanwhile finds nothing,
/// so the caller answers what a sequential client would get (404, 400 or 409), never a constraint violation.
/// </summary>
public static class RowLocks
{
    /// <summary>
    /// Keeps the data set from being deleted until the transaction ends (what a referencing insert needs).
    /// Returns false when it does not exist for this context's tenant.
    /// </summary>
    public static async Task<bool> KeepDatasetAsync(TransferDbContext db, Guid id, CancellationToken cancellation) =>
        await db.Datasets.FromSql($"SELECT * FROM datasets WHERE \"Id\" = {id} FOR KEY SHARE").AnyAsync(cancellation);

    /// <summary>Holds the data set exclusively (deleting it or changing its rows); null when it does not exist for this
    /// tenant.</summary>
    public static Task<Dataset?> LockDatasetAsync(TransferDbContext db, Guid id, CancellationToken cancellation) =>
        db.Datasets.FromSql($"SELECT * FROM datasets WHERE \"Id\" = {id} FOR UPDATE").FirstOrDefaultAsync(cancellation);

    /// <summary>Holds the model exclusively (renaming it, deleting it); null when it does not exist for this
    /// tenant.</summary>
    public static Task<TrainedModel?> LockModelAsync(TransferDbContext db, Guid id, CancellationToken cancellation) =>
        db.Models.FromSql($"SELECT * FROM models WHERE \"Id\" = {id} FOR UPDATE").FirstOrDefaultAsync(cancellation);

    /// <summary>
    /// Keeps the model and its name unchanged until the transaction ends (pointing an alias at it): a rename or a
    /// delete waits. Returns its name and tenant, or null when it does not exist for this tenant.
    /// </summary>
    public static async Task<(string? Name, string Tenant, int? Version)?> KeepModelAsync(
        TransferDbContext db,
        Guid id,
        CancellationToken cancellation
    )
    {
        var row = await db
            .Models.FromSql($"SELECT * FROM models WHERE \"Id\" = {id} FOR SHARE")
            .Select(m => new
            {
                m.Name,
                m.Tenant,
                m.Version,
            })
            .FirstOrDefaultAsync(cancellation);
        return row is null ? null : (row.Name, row.Tenant, row.Version);
    }

    /// <summary>
    /// A named lock for things that are not rows (a backbone id, a tenant's job count): shared holders exclude
    /// only exclusive ones. Released when the transaction ends.
    /// </summary>
    public static async Task AdvisoryAsync(
        TransferDbContext db,
        string name,
        bool shared,
        CancellationToken cancellation
    )
    {
        if (shared)
            await db.Database.ExecuteSqlInterpolatedAsync(
                $"SELECT pg_advisory_xact_lock_shared(hashtext({name}))",
                cancellation
            );
        else
            await db.Database.ExecuteSqlInterpolatedAsync(
                $"SELECT pg_advisory_xact_lock(hashtext({name}))",
                cancellation
            );
    }

    /// <summary>The lock name that keeps a backbone from being deleted while a job that uses it is created.</summary>
    public static string Backbone(string id) => $"backbone:{id}";

    /// <summary>The lock name that serialises counting and adding a tenant's jobs (quotas).</summary>
    public static string TenantJobs(string tenant) => $"tenant-jobs:{tenant}";

    /// <summary>The lock name that serialises a tenant's uploads at their commit (storage quota).</summary>
    public static string TenantStorage(string tenant) => $"tenant-storage:{tenant}";
}
