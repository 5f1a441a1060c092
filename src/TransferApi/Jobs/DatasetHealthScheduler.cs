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
        var requested = await db.Database.ExecuteSqlInterpolatedAsync(
            $"""
            INSERT INTO dataset_health ("DatasetId", "Status", "Backbone", "RequestedVersion", "Progress", "UpdatedAt")
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
        if (requested == 0)
            return;
        jobs.Enqueue<DatasetHealthRunner>(r => r.RunAsync(datasetId, CancellationToken.None));
        logger.LogInformation("Dataset {DatasetId}: health requested", datasetId);
    }
}
