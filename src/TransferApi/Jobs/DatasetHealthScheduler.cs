using Hangfire;
using Microsoft.EntityFrameworkCore;
using TransferApi.Persistence;
using TransferApi.Training.Backbones;

namespace TransferApi.Jobs;

/// <summary>
/// Asks for a data set's health after it changed: marks its health Pending at the data set's current version and
/// queues a <see cref="DatasetHealthRunner"/> run. Several changes in a row queue several runs; each run computes only
/// when the report is not already of the current version, so the later ones end at once.
/// </summary>
public sealed class DatasetHealthScheduler(
    IDbContextFactory<TransferDbContext> dbFactory,
    IBackgroundJobClient jobs,
    ILogger<DatasetHealthScheduler> logger
)
{
    /// <summary>The backbone health uses until a client asks for another.</summary>
    public const string DefaultBackbone = BackboneCatalog.ResNet18ImageNet;

    /// <param name="backbone">Compute with this backbone from now on (null: the one the data set's health
    /// uses).</param>
    public async Task RequestAsync(Guid datasetId, string? backbone = null, CancellationToken cancellation = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellation);
        int requested;
        try
        {
            requested = await db.Database.ExecuteSqlInterpolatedAsync(
                $"""
                INSERT INTO dataset_health
                    ("DatasetId", "Status", "Backbone", "RequestedVersion", "Progress", "UpdatedAt")
                SELECT d."Id", 'Pending', COALESCE(CAST({backbone} AS varchar(100)), {DefaultBackbone}), d."Version", 0,
                    now()
                FROM datasets d WHERE d."Id" = {datasetId}
                ON CONFLICT ("DatasetId") DO UPDATE SET
                    "Status" = 'Pending',
                    "Backbone" = COALESCE(CAST({backbone} AS varchar(100)), dataset_health."Backbone"),
                    "RequestedVersion" = EXCLUDED."RequestedVersion",
                    "Progress" = 0,
                    "Error" = NULL,
                    "UpdatedAt" = now()
                """,
                cancellation
            );
        }
        catch (Npgsql.PostgresException e) when (e.SqlState == Npgsql.PostgresErrorCodes.ForeignKeyViolation)
        {
            // The data set was deleted between the change and this request: nothing to compute.
            return;
        }
        if (requested == 0)
            return;
        jobs.Enqueue<DatasetHealthRunner>(r => r.RunAsync(datasetId, CancellationToken.None));
        logger.LogInformation("Dataset {DatasetId}: health requested", datasetId);
    }

    /// <summary>
    /// Asks again for health nobody is computing: data sets without a health row (uploaded before health existed) and
    /// rows Pending for longer than <paramref name="waiting"/> (a request whose queueing was lost to a crash between
    /// the change's commit and the enqueue). A duplicate run costs nothing: it finds the report current and ends.
    /// Returns how many were asked for.
    /// </summary>
    public async Task<int> RequestForgottenAsync(TimeSpan waiting, CancellationToken cancellation)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellation);
        var before = DateTime.UtcNow - waiting;
        var forgotten = await db
            .Datasets.Where(d =>
                !db.DatasetHealth.Any(h => h.DatasetId == d.Id)
                || db.DatasetHealth.Any(h =>
                    h.DatasetId == d.Id && h.Status == HealthStatus.Pending && h.UpdatedAt < before
                )
            )
            .OrderBy(d => d.CreatedAt)
            .Select(d => d.Id)
            .Take(100)
            .ToListAsync(cancellation);
        foreach (var id in forgotten)
            await RequestAsync(id, cancellation: cancellation);
        return forgotten.Count;
    }
}

/// <summary>Every worker process now and then asks for the health nobody is computing (see <see
/// cref="DatasetHealthScheduler.RequestForgottenAsync"/>).</summary>
public sealed class HealthSweepService(DatasetHealthScheduler scheduler, ILogger<HealthSweepService> logger)
    : PeriodicService(logger)
{
    protected override TimeSpan Interval => TimeSpan.FromMinutes(1);
    protected override string Activity => "Looking for data sets whose health nobody computes";

    protected override async Task RunOnceAsync(CancellationToken cancellation)
    {
        if (await scheduler.RequestForgottenAsync(2 * Interval, cancellation) is > 0 and var asked)
            logger.LogInformation("Asked again for the health of {Count} data set(s) nobody computed", asked);
    }
}
