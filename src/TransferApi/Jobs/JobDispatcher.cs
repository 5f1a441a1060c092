using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;

namespace TransferApi.Jobs;

/// <summary>
/// Hands queued training jobs to Hangfire only as workers free up, choosing round-robin across tenants, so one
/// tenant's backlog never delays another tenant's next job by more than one job's time. Hangfire's own queue is
/// first in, first out; it never holds more jobs than there are training workers, and the rest wait in
/// PostgreSQL as Queued rows without a Hangfire job. Called when a job is created, ends or is cancelled, and
/// periodically by every worker (<see cref="JobDispatchService"/>); an advisory lock makes concurrent calls take turns.
/// </summary>
public sealed class JobDispatcher(
    IDbContextFactory<TransferDbContext> dbFactory,
    IBackgroundJobClient jobs,
    JobStorage storage,
    IOptions<QuotaOptions> quotas,
    ILogger<JobDispatcher> logger
)
{
    private const string LockName = "training-dispatch";

    /// <summary>Dispatches as many queued jobs as there are free training workers; returns how many.</summary>
    public async Task<int> DispatchAsync(CancellationToken cancellation = default)
    {
        var capacity = TrainingWorkers();
        await using var db = await dbFactory.CreateDbContextAsync(cancellation);
        await using var transaction = await db.Database.BeginTransactionAsync(cancellation);
        await RowLocks.AdvisoryAsync(db, LockName, shared: false, cancellation);
        // In flight: running, or handed to Hangfire and waiting for (or handed back to) a worker.
        var inFlight = await db
            .TrainingJobs.Where(j =>
                j.Status == JobStatus.Running || (j.Status == JobStatus.Queued && j.DispatchedAt != null)
            )
            .GroupBy(j => j.Tenant)
            .Select(g => new { Tenant = g.Key, Count = g.Count() })
            .ToDictionaryAsync(g => g.Tenant, g => g.Count, cancellation);
        var free = capacity - inFlight.Values.Sum();
        if (free <= 0)
            return 0;
        var waiting = await db
            .TrainingJobs.Where(j => j.Status == JobStatus.Queued && j.DispatchedAt == null)
            .GroupBy(j => j.Tenant)
            .Select(g => g.Key)
            .ToListAsync(cancellation);
        if (waiting.Count == 0)
            return 0;
        var lastDispatch = await db
            .TrainingJobs.Where(j => waiting.Contains(j.Tenant) && j.DispatchedAt != null)
            .GroupBy(j => j.Tenant)
            .Select(g => new { Tenant = g.Key, Last = g.Max(j => j.DispatchedAt) })
            .ToDictionaryAsync(g => g.Tenant, g => g.Last, cancellation);

        var dispatched = new List<TrainingJob>();
        var maxRunning = quotas.Value.MaxRunningJobsPerTenant ?? int.MaxValue;
        while (free > 0)
        {
            // The tenant with the fewest jobs in flight goes first; among equals, the one served longest ago.
            var tenant = waiting
                .Where(t => inFlight.GetValueOrDefault(t) < maxRunning)
                .OrderBy(t => inFlight.GetValueOrDefault(t))
                .ThenBy(t => lastDispatch.GetValueOrDefault(t) ?? DateTime.MinValue)
                .ThenBy(t => t, StringComparer.Ordinal)
                .FirstOrDefault();
            if (tenant is null)
                break;
            var skip = dispatched.Where(j => j.Tenant == tenant).Select(j => j.Id).ToList();
            var job = await db
                .TrainingJobs.Where(j =>
                    j.Tenant == tenant && j.Status == JobStatus.Queued && j.DispatchedAt == null && !skip.Contains(j.Id)
                )
                .OrderBy(j => j.CreatedAt)
                .ThenBy(j => j.Id)
                .FirstOrDefaultAsync(cancellation);
            if (job is null)
            {
                waiting.Remove(tenant);
                continue;
            }
            job.DispatchedAt = DateTime.UtcNow;
            dispatched.Add(job);
            inFlight[tenant] = inFlight.GetValueOrDefault(tenant) + 1;
            lastDispatch[tenant] = job.DispatchedAt;
            free--;
        }
        if (dispatched.Count == 0)
            return 0;
        // The rows say "dispatched" before Hangfire hears of them: a worker never sees a job it would not count.
        await db.SaveChangesAsync(cancellation);
        await transaction.CommitAsync(cancellation);
        foreach (var job in dispatched)
        {
            // Only the id travels through Hangfire; the runner reads everything else from PostgreSQL.
            var hangfireId = jobs.Enqueue<TrainingJobRunner>(runner => runner.RunAsync(job.Id, CancellationToken.None));
            await db
                .TrainingJobs.Where(j => j.Id == job.Id)
                .ExecuteUpdateAsync(s => s.SetProperty(j => j.HangfireJobId, hangfireId), CancellationToken.None);
            logger.LogInformation("Training job {JobId} of tenant {Tenant} handed to the workers", job.Id, job.Tenant);
        }
        return dispatched.Count;
    }

    /// <summary>Hangfire workers serving the training queue across every live server (at least one, so a lone API still
    /// queues one ahead).</summary>
    private int TrainingWorkers()
    {
        var servers = storage.GetMonitoringApi().Servers();
        return Math.Max(1, servers.Where(s => s.Queues.Contains(TrainingJobRunner.Queue)).Sum(s => s.WorkersCount));
    }
}

/// <summary>Runs the dispatcher now and then in every worker process: nothing queued waits for a notification that was
/// lost.</summary>
public sealed class JobDispatchService(
    JobDispatcher dispatcher,
    IOptions<WorkerOptions> worker,
    ILogger<JobDispatchService> logger
) : PeriodicService(logger)
{
    protected override TimeSpan Interval => worker.Value.DispatchInterval;
    protected override string Activity => "Dispatching queued training jobs";

    protected override Task RunOnceAsync(CancellationToken cancellation) => dispatcher.DispatchAsync(cancellation);
}
