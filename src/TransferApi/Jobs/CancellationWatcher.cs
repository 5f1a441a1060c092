using Microsoft.EntityFrameworkCore;
using TransferApi.Persistence;

namespace TransferApi.Jobs;

/// <summary>
/// Polls a running job's row (a training job's or a batch prediction's) and cancels <see cref="Token"/> when a
/// client asks to cancel it. Polling the database works whichever process runs the job, and twice a second keeps
/// the stop within one batch.
/// </summary>
public sealed class CancellationWatcher : IAsyncDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(500);

    private readonly CancellationTokenSource requested = new();
    private readonly CancellationTokenSource stop = new();
    private readonly Task loop;

    public CancellationToken Token => requested.Token;
    public bool IsCancellationRequested => requested.IsCancellationRequested;

    public static CancellationWatcher ForTrainingJob(IDbContextFactory<TransferDbContext> dbFactory, Guid jobId) =>
        new(dbFactory, (db, c) => db.TrainingJobs.AnyAsync(j => j.Id == jobId && j.CancelRequested, c));

    public static CancellationWatcher ForBatchPrediction(IDbContextFactory<TransferDbContext> dbFactory, Guid id) =>
        new(dbFactory, (db, c) => db.BatchPredictions.AnyAsync(b => b.Id == id && b.CancelRequested, c));

    private CancellationWatcher(
        IDbContextFactory<TransferDbContext> dbFactory,
        Func<TransferDbContext, CancellationToken, Task<bool>> cancelRequested
    )
    {
        loop = Task.Run(async () =>
        {
            using var timer = new PeriodicTimer(Interval);
            try
            {
                while (await timer.WaitForNextTickAsync(stop.Token))
                {
                    await using var db = await dbFactory.CreateDbContextAsync(stop.Token);
                    if (await cancelRequested(db, stop.Token))
                    {
                        await requested.CancelAsync();
                        return;
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // the job ended
            }
        });
    }

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync();
        try
        {
            await loop;
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
        {
            // a database hiccup while polling must not fail the job that already ended
        }
        stop.Dispose();
        requested.Dispose();
    }
}
