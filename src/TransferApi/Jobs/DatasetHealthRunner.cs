using System.Diagnostics;
using System.Threading.Channels;
using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Persistence.Documents;
using TransferApi.Services;
using TransferApi.Training;
using TransferApi.Training.Checkpoints;
using TransferApi.Training.Health;
using TransferApi.Training.Imaging;

namespace TransferApi.Jobs;

/// <summary>
/// Hangfire glue for one data set's health: its images' features from the cache (the rest through the backbone once,
/// and cached), the training core's analysis, and the report stored as the health row's document. A data set deleted
/// or changed while it runs ends the run quietly (a changed one has a newer run queued). A client's data never fails
/// it: an empty or untrainable data set is Ready with warnings.
/// </summary>
public sealed class DatasetHealthRunner(
    IDbContextFactory<TransferDbContext> dbFactory,
    BackboneRegistry backbones,
    IOptions<WorkerOptions> worker,
    WebhookPublisher webhooks,
    ILogger<DatasetHealthRunner> logger
)
{
    public const string Queue = "health";

    /// <summary>Share of the progress bar the feature pass takes; the analysis takes the rest.</summary>
    private const double FeatureShare = 0.8;

    [Queue(Queue)]
    [AutomaticRetry(Attempts = 2)]
    public async Task RunAsync(Guid datasetId, CancellationToken shutdown)
    {
        using var logScope = logger.BeginScope("Dataset {DatasetId}", datasetId);
        await using var db = await dbFactory.CreateDbContextAsync(shutdown);
        var health = await db.DatasetHealth.AsNoTracking().FirstOrDefaultAsync(h => h.DatasetId == datasetId, shutdown);
        var version = await db
            .Datasets.Where(d => d.Id == datasetId)
            .Select(d => (long?)d.Version)
            .FirstOrDefaultAsync(shutdown);
        if (health is null || version is null)
            return;
        if (health.Report is { } done && done.DatasetVersion == version && done.Backbone == health.Backbone)
        {
            await SetStatusAsync(db, datasetId, version.Value, health.Backbone, HealthStatus.Ready, null, shutdown);
            return;
        }
        using var span = Telemetry.StartSpan(
            "dataset health",
            ("transferapi.dataset.id", datasetId),
            ("transferapi.backbone", health.Backbone)
        );
        await SetStatusAsync(db, datasetId, version.Value, health.Backbone, HealthStatus.Running, null, shutdown);
        try
        {
            var report = await ComputeAsync(db, datasetId, version.Value, health.Backbone, shutdown);
            var counts = new HealthCountsDocument(
                report.Backbone,
                report.DatasetVersion,
                report.ComputedAt,
                report.NearDuplicates.Count,
                report.Leakage.Count,
                report.LabelIssues.Count,
                report.Outliers.Count,
                report.Warnings.Count
            );
            var stored = await db
                .DatasetHealth.Where(h => h.DatasetId == datasetId)
                .ExecuteUpdateAsync(
                    s =>
                        s.SetProperty(h => h.Report, report)
                            .SetProperty(h => h.Counts, counts)
                            .SetProperty(h => h.UpdatedAt, DateTime.UtcNow)
                            .SetProperty(h => h.Progress, 1.0),
                    CancellationToken.None
                );
            if (stored == 0)
                return;
            var ready = await SetStatusAsync(
                db,
                datasetId,
                version.Value,
                health.Backbone,
                HealthStatus.Ready,
                null,
                shutdown
            );
            var tenant = await db
                .Datasets.Where(d => d.Id == datasetId)
                .Select(d => d.Tenant)
                .FirstOrDefaultAsync(shutdown);
            // Only the run that computed the report announces it (a re-run that finds it current does not).
            if (ready > 0 && tenant is not null)
                await webhooks.PublishAsync(
                    db,
                    tenant,
                    WebhookEvents.HealthReady(datasetId, version.Value, counts),
                    CancellationToken.None
                );
            logger.LogInformation(
                "Dataset {DatasetId} health at version {Version}: {Images} images ({Computed} through the backbone) "
                    + "in {Seconds:N1} s; {Groups} near-duplicate group(s), {Leaks} leaking, {Issues} label issue(s), "
                    + "{Outliers} outlier(s)",
                datasetId,
                version,
                report.Images,
                report.FeaturesComputed,
                report.Seconds,
                report.NearDuplicates.Count,
                report.Leakage.Count,
                report.LabelIssues.Count,
                report.Outliers.Count
            );
        }
        catch (OperationCanceledException) when (shutdown.IsCancellationRequested)
        {
            await SetStatusAsync(db, datasetId, version.Value, health.Backbone, HealthStatus.Pending, null, default);
            throw;
        }
        catch (TrainingInputException e)
        {
            // Images deleted while being read: that change queued a newer run. Anything else is the backbone's.
            var now = await db
                .Datasets.Where(d => d.Id == datasetId)
                .Select(d => (long?)d.Version)
                .FirstOrDefaultAsync(CancellationToken.None);
            if (now == version)
                await SetStatusAsync(
                    db,
                    datasetId,
                    version.Value,
                    health.Backbone,
                    HealthStatus.Failed,
                    e.Message,
                    default
                );
        }
        catch (Exception e)
            when (e is not DbUpdateException and not Npgsql.NpgsqlException and not OperationCanceledException)
        {
            logger.LogError(e, "Dataset {DatasetId}: health failed", datasetId);
            await SetStatusAsync(
                db,
                datasetId,
                version.Value,
                health.Backbone,
                HealthStatus.Failed,
                $"{e.GetType().Name}: {e.Message}",
                default
            );
        }
        finally
        {
            NativeMemory.Trim();
        }
    }

    /// <summary>Sets the status only while the row still asks for this version and backbone: a change made meanwhile
    /// keeps it Pending for the run it queued.</summary>
    private static Task<int> SetStatusAsync(
        TransferDbContext db,
        Guid datasetId,
        long version,
        string backbone,
        HealthStatus status,
        string? error,
        CancellationToken cancellation
    ) =>
        db
            .DatasetHealth.Where(h =>
                h.DatasetId == datasetId && h.RequestedVersion == version && h.Backbone == backbone
            )
            .ExecuteUpdateAsync(
                s =>
                    s.SetProperty(h => h.Status, status)
                        .SetProperty(h => h.Error, error)
                        .SetProperty(h => h.UpdatedAt, DateTime.UtcNow),
                cancellation
            );

    private async Task<HealthReportDocument> ComputeAsync(
        TransferDbContext db,
        Guid datasetId,
        long version,
        string backboneId,
        CancellationToken cancellation
    )
    {
        var clock = Stopwatch.StartNew();
        var rows = await db
            .DatasetImages.AsNoTracking()
            .Where(i => i.DatasetId == datasetId)
            .OrderBy(i => i.Id)
            .Select(i => new
            {
                i.Id,
                i.Label,
                i.Split,
                i.Sha256,
                i.Width,
                i.Height,
                Features = db
                    .ImageFeatures.Where(f => f.BackboneId == backboneId && f.Sha256 == i.Sha256)
                    .Select(f => f.Values)
                    .FirstOrDefault(),
            })
            .ToListAsync(cancellation);
        var backbone = await backbones.GetAsync(backboneId);
        var ids = rows.Select(r => r.Id).ToList();
        var images = rows.Select(r => new HealthImage(r.Label, r.Split)).ToList();
        await using var progress = new FeaturePassWriter(
            dbFactory,
            backboneId,
            (progressDb, share) =>
                progressDb
                    .DatasetHealth.Where(h => h.DatasetId == datasetId)
                    .ExecuteUpdateAsync(s => s.SetProperty(h => h.Progress, Math.Round(share, 3))),
            FeatureShare
        );
        var findings = await Task.Factory.StartNew(
            () =>
            {
                JobThreads.Prepare(worker.Value);
                using var features = new TransferLearningTrainer(backbone).Embed(
                    rows.Select(r => new ImageToEmbed(Convert.ToHexString(r.Sha256), r.Features)).ToList(),
                    new DatabaseImageSource(dbFactory, ids, WorkingCopy.Serves(backbone.Preprocessor.Spec)),
                    progress,
                    cancellation
                );
                progress.Report(FeatureShare);
                return DatasetHealth.Analyze(features, images, cancellation: cancellation);
            },
            cancellation,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default
        );
        HealthImageDocument Image(int i) => new(ids[i], rows[i].Label, rows[i].Split);
        HealthGroupDocument Group(NearDuplicateGroup g) => new(g.Images.Select(Image).ToList(), g.Similarity);
        var labelled = rows.Count(r => r.Label is not null);
        var warnings = findings.Warnings.ToList();
        if (
            DatasetHealth.TinyImages(
                rows.Select(r => (r.Width, r.Height)).ToList(),
                backbone.Preprocessor.Spec.InputSize
            ) is
            { } tiny
        )
            warnings.Add(tiny);
        return new HealthReportDocument(
            1,
            backboneId,
            version,
            DateTime.UtcNow,
            Math.Round(clock.Elapsed.TotalSeconds, 3),
            rows.Count,
            rows.Count - labelled,
            rows.Count(r => r.Features is null),
            NearDuplicates.DefaultThreshold,
            findings.NearDuplicates.Select(Group).ToList(),
            findings.Leakage.Select(Group).ToList(),
            findings
                .LabelIssues.Select(i => new LabelIssueDocument(
                    ids[i.Image],
                    findings.Labels[i.Label],
                    findings.Labels[i.SuggestedLabel],
                    Math.Round(i.Confidence, 4)
                ))
                .ToList(),
            findings
                .Outliers.Select(o => new OutlierDocument(
                    ids[o.Image],
                    rows[o.Image].Label,
                    rows[o.Image].Split,
                    o.Score
                ))
                .ToList(),
            findings
                .ClassBalance.Select(c => new ClassBalanceDocument(
                    c.Label,
                    c.Images,
                    Math.Round(c.Images / (double)Math.Max(1, labelled), 4)
                ))
                .ToList(),
            warnings
        );
    }
}
