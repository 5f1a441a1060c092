using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training.Checkpoints;

namespace TransferApi.Jobs;

/// <summary>
/// The one row per running job that holds its latest crash-recovery checkpoint (up to hundreds of megabytes
/// while fine-tuning). Replacing or deleting such a row leaves a dead copy in PostgreSQL's TOAST table until a
/// vacuum marks its space reusable; autovacuum wakes once a minute at best, while a busy service replaces
/// checkpoints faster, so the dead copies piled up to many times the live data. Every replacement and delete is
/// therefore followed by a vacuum of this one table: its space is reused by the next checkpoint at once, and
/// the table shrinks back when its rows are gone.
/// </summary>
public sealed class CheckpointStore(
    IDbContextFactory<TransferDbContext> dbFactory,
    Telemetry telemetry,
    ILogger<CheckpointStore> logger
)
{
    /// <summary>Stores <paramref name="checkpoint"/> as the job's resume point (replacing the previous one); returns
    /// its size in bytes.</summary>
    public async Task<long> SaveAsync(Guid jobId, TrainingCheckpoint checkpoint, CancellationToken cancellation)
    {
        var data = checkpoint.ToBytes();
        await using (var db = await dbFactory.CreateDbContextAsync(cancellation))
        await using (var transaction = await db.Database.BeginTransactionAsync(cancellation))
        {
            await db.Database.ExecuteSqlInterpolatedAsync(
                $"""
                INSERT INTO training_checkpoints ("JobId", "Epoch", "Data", "SavedAt") VALUES ({jobId},
                    {checkpoint.Epoch}, {data}, {DateTime.UtcNow})
                ON CONFLICT ("JobId") DO UPDATE SET "Epoch" = EXCLUDED."Epoch", "Data" = EXCLUDED."Data", "SavedAt" =
                    EXCLUDED."SavedAt"
                """,
                cancellation
            );
            await db
                .TrainingJobs.Where(j => j.Id == jobId)
                .ExecuteUpdateAsync(u => u.SetProperty(j => j.CheckpointEpoch, checkpoint.Epoch), cancellation);
            await transaction.CommitAsync(cancellation);
        }
        telemetry.CheckpointWritten(data.Length);
        await ReclaimAsync(cancellation);
        return data.Length;
    }

    /// <summary>Drops the job's checkpoint (unreadable, or for other inputs).</summary>
    public async Task DeleteAsync(Guid jobId, CancellationToken cancellation)
    {
        await using (var db = await dbFactory.CreateDbContextAsync(cancellation))
            await db.TrainingCheckpoints.Where(c => c.JobId == jobId).ExecuteDeleteAsync(cancellation);
        await ReclaimAsync(cancellation);
    }

    /// <summary>
    /// Vacuums the checkpoint table so the space of replaced and deleted checkpoints is reused at once (and
    /// returned to the file system when it is at the end of the file). A vacuum cannot remove a row version that
    /// an open snapshot may still see, nor return the file's tail while another session reads the table; while the
    /// table stays large, it is tried again up to ten times, a second apart, and the transactions holding it back
    /// are logged.
    /// </summary>
    public async Task ReclaimAsync(CancellationToken cancellation)
    {
        for (var attempt = 1; attempt <= MaxVacuumAttempts; attempt++)
        {
            var clock = Stopwatch.StartNew();
            try
            {
                await using var db = await dbFactory.CreateDbContextAsync(cancellation);
                await db.Database.ExecuteSqlRawAsync("VACUUM training_checkpoints", cancellation);
                var space = await db
                    .Database.SqlQuery<TableSpace>(
                        $"""
                        SELECT pg_total_relation_size('training_checkpoints') AS "OnDisk",
                               COALESCE((SELECT SUM(octet_length("Data")) FROM training_checkpoints), 0)::bigint AS
                                   "Live",
                               COALESCE((SELECT s.n_dead_tup FROM pg_stat_all_tables s JOIN pg_class c ON
                                   c.reltoastrelid = s.relid WHERE c.relname = 'training_checkpoints'), 0) AS
                                   "DeadChunks"
                        """
                    )
                    .SingleAsync(cancellation);
                // Done when the file is small again: with no dead chunks left but the tail not returned (a vacuum gives
                // up truncating while another session reads the table), the next attempt truncates it.
                if (space.OnDisk <= 2 * space.Live + AllowedSlackBytes)
                {
                    logger.LogDebug(
                        "Checkpoint table vacuumed in {Milliseconds} ms: {OnDisk:N0} bytes on disk for {Live:N0} live",
                        clock.ElapsedMilliseconds,
                        space.OnDisk,
                        space.Live
                    );
                    return;
                }
                // Whoever holds an old snapshot keeps the dead copies: name them in the log.
                var holders = await db
                    .Database.SqlQuery<string>(
                        $"""
                        SELECT a.pid || ' ' || COALESCE(a.state, '') || ' since ' || a.xact_start || ': ' ||
                            left(a.query, 120) AS "Value"
                        FROM pg_stat_activity a
                        WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.xact_start < now() -
                            interval '1 second'
                        """
                    )
                    .ToListAsync(cancellation);
                logger.LogInformation(
                    "Vacuum {Attempt} of the checkpoint table left {OnDisk:N0} bytes on disk for {Live:N0} of live "
                        + "checkpoints, {Dead} dead chunks; open transactions: {Holders}",
                    attempt,
                    space.OnDisk,
                    space.Live,
                    space.DeadChunks,
                    string.Join(" | ", holders)
                );
            }
            catch (Npgsql.PostgresException e)
            {
                // Housekeeping only: autovacuum's settings on the table (see the migration) catch up later.
                logger.LogWarning(e, "Vacuuming the checkpoint table failed");
                return;
            }
            if (attempt < MaxVacuumAttempts)
                await Task.Delay(TimeSpan.FromSeconds(1), cancellation);
        }
    }

    private const int MaxVacuumAttempts = 10;

    /// <summary>What a vacuum leaves besides live rows: the pages it cannot return mid-file, up to a few checkpoints'
    /// chunks.</summary>
    private const long AllowedSlackBytes = 32L * 1024 * 1024;

    private sealed record TableSpace(long OnDisk, long Live, long DeadChunks);
}
