using System.Diagnostics;
using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Persistence.Documents;
using TransferApi.Services;
using TransferApi.Training;
using TransferApi.Training.Imaging;
using TransferApi.Training.Inference;
using static TorchSharp.torch;

namespace TransferApi.Jobs;

/// <summary>
/// Scores a data set's images, or a zip's the client uploaded, with a model on the <c>scoring</c> queue. A model with a
/// frozen backbone is scored from
/// the feature cache (the backbone runs only for images never embedded before, and their features are cached for
/// every later pass); a fine-tuned model runs its whole network over the images. Answers are what /predict gives:
/// calibrated probabilities, novelty and unknown.
/// </summary>
public sealed class BatchPredictionRunner(
    IDbContextFactory<TransferDbContext> dbFactory,
    BackboneRegistry backbones,
    WebhookPublisher webhooks,
    IOptions<WorkerOptions> worker,
    IOptions<ServingOptions> serving,
    ILogger<BatchPredictionRunner> logger
)
{
    public const string Queue = "scoring";

    /// <summary>Images per forward pass of a fine-tuned model, and per stored chunk of results.</summary>
    private const int ChunkSize = 64;

    /// <summary>The share of the progress bar the feature pass takes; scoring the features takes the rest.</summary>
    private const double FeatureShare = 0.9;

    private sealed record ImageRow(Guid Id, string FileName, string? Label, DataSplit? Split, byte[] Sha256);

    [Queue(Queue)]
    [AutomaticRetry(Attempts = 2)]
    public async Task RunAsync(Guid batchId, CancellationToken shutdown)
    {
        using var logScope = logger.BeginScope("Batch prediction {BatchId}", batchId);
        await using var db = await dbFactory.CreateDbContextAsync(shutdown);
        var started = await db
            .BatchPredictions.Where(b =>
                b.Id == batchId && (b.Status == JobStatus.Queued || b.Status == JobStatus.Running) && !b.CancelRequested
            )
            .ExecuteUpdateAsync(
                s => s.SetProperty(b => b.Status, JobStatus.Running).SetProperty(b => b.StartedAt, DateTime.UtcNow),
                shutdown
            );
        if (started == 0)
            return;
        var batch = await db.BatchPredictions.AsNoTracking().FirstAsync(b => b.Id == batchId, shutdown);
        var clock = Stopwatch.StartNew();
        try
        {
            var fromCache = await ScoreAsync(db, batch, shutdown);
            await FinishAsync(db, batch, JobStatus.Succeeded, null);
            logger.LogInformation(
                "Batch prediction {BatchId}: {Images} images in {Seconds:N1} s ({FromCache} from cached features)",
                batchId,
                batch.ImagesTotal,
                clock.Elapsed.TotalSeconds,
                fromCache
            );
        }
        catch (OperationCanceledException) when (!shutdown.IsCancellationRequested)
        {
            await FinishAsync(db, batch, JobStatus.Cancelled, null);
        }
        catch (Exception e)
            when (e is not DbUpdateException and not Npgsql.NpgsqlException and not OperationCanceledException)
        {
            logger.LogError(e, "Batch prediction {BatchId} failed", batchId);
            await FinishAsync(db, batch, JobStatus.Failed, $"{e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>Scores and stores every image; returns how many were scored from cached features.</summary>
    private async Task<int> ScoreAsync(TransferDbContext db, BatchPrediction batch, CancellationToken shutdown)
    {
        var model = await db.Models.AsNoTracking().FirstAsync(m => m.Id == batch.ModelId, shutdown);
        var backbone = await backbones.GetAsync(model.Backbone);
        var images = await ImagesAsync(db, batch, shutdown);
        // Previous attempts' results (a retried run) are replaced.
        await db.BatchPredictionResults.Where(r => r.BatchId == batch.Id).ExecuteDeleteAsync(shutdown);
        await db
            .BatchPredictions.Where(b => b.Id == batch.Id)
            .ExecuteUpdateAsync(
                s => s.SetProperty(b => b.ImagesTotal, images.Count).SetProperty(b => b.ImagesDone, 0),
                shutdown
            );
        batch.ImagesTotal = images.Count;
        await using var watch = CancellationWatcher.ForBatchPrediction(dbFactory, batch.Id);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(shutdown, watch.Token);

        using var classifier = new ImageClassifier(backbone, ModelMapping.ToCheckpoint(model));
        var noveltyThreshold = classifier.Checkpoint.Novelty?.Threshold(serving.Value.NoveltyAcceptance);
        var ids = images.Select(i => i.Id).ToList();
        await using var progress = new FeaturePassWriter(
            dbFactory,
            model.Backbone,
            (progressDb, share) => StoreProgressAsync(progressDb, batch, share),
            FeatureShare
        );
        var cached =
            model.FineTunedStages == 0
                ? await CachedFeaturesAsync(db, model.Backbone, images, shutdown)
                : new float[]?[images.Count];
        var fromCache = cached.Count(f => f is not null);
        var scores = await OnJobThreadAsync(() =>
        {
            if (model.FineTunedStages > 0)
                return ScoreFineTuned(classifier, batch, ids, progress, cancel.Token);
            using var scope = NewDisposeScope();
            using var features = new TransferLearningTrainer(backbone).Embed(
                images.Select((image, i) => new ImageToEmbed(Convert.ToHexString(image.Sha256), cached[i])).ToList(),
                new DatabaseImageSource(
                    dbFactory,
                    ids,
                    WorkingCopy.Serves(backbone.Preprocessor.Spec),
                    uploadedForScoring: batch.DatasetId is null
                ),
                progress,
                cancel.Token
            );
            return classifier.ScoreFeatures(features);
        });

        for (var start = 0; start < images.Count; start += ChunkSize)
        {
            db.BatchPredictionResults.AddRange(
                Enumerable
                    .Range(start, Math.Min(ChunkSize, images.Count - start))
                    .Select(i => ToResult(batch, i, images[i], scores[i], classifier, noveltyThreshold))
            );
            await db.SaveChangesAsync(shutdown);
            db.ChangeTracker.Clear();
        }
        await db
            .BatchPredictions.Where(b => b.Id == batch.Id)
            .ExecuteUpdateAsync(
                s => s.SetProperty(b => b.ImagesDone, images.Count).SetProperty(b => b.ImagesFromCache, fromCache),
                shutdown
            );
        return fromCache;
    }

    /// <summary>A fine-tuned model changed the backbone: its whole network runs over the images as /predict does,
    /// from the bytes clients sent.</summary>
    private ImageScores[] ScoreFineTuned(
        ImageClassifier classifier,
        BatchPrediction batch,
        List<Guid> ids,
        FeaturePassWriter progress,
        CancellationToken cancellation
    )
    {
        var scores = new List<ImageScores>(ids.Count);
        var source = new DatabaseImageSource(
            dbFactory,
            ids,
            workingCopies: false,
            uploadedForScoring: batch.DatasetId is null
        );
        foreach (var bytes in source.Batches(Enumerable.Range(0, ids.Count).ToList(), ChunkSize, cancellation))
        {
            scores.AddRange(classifier.Score(classifier.Decode(bytes), bytes.Count));
            progress.Report(FeatureShare * scores.Count / ids.Count);
        }
        return [.. scores];
    }

    private static BatchPredictionResult ToResult(
        BatchPrediction batch,
        int position,
        ImageRow image,
        ImageScores scores,
        ImageClassifier classifier,
        double? noveltyThreshold
    ) =>
        new()
        {
            BatchId = batch.Id,
            Position = position,
            ImageId = batch.DatasetId is null ? null : image.Id,
            FileName = image.FileName,
            Label = image.Label,
            Split = image.Split,
            Predictions = classifier
                .Ranked(scores.Probabilities, batch.TopK)
                .Select(l => new LabelProbabilityDocument(l.Label, l.Probability))
                .ToList(),
            Novelty = scores.Novelty,
            Unknown = scores.Novelty is null ? null : scores.Novelty > noveltyThreshold,
        };

    /// <summary>The images to score in result order: the data set's (or its split's), or the uploaded zip's.</summary>
    private static async Task<List<ImageRow>> ImagesAsync(
        TransferDbContext db,
        BatchPrediction batch,
        CancellationToken cancellation
    )
    {
        if (batch.DatasetId is null)
            return await db
                .BatchPredictionImages.AsNoTracking()
                .Where(i => i.BatchId == batch.Id)
                .OrderBy(i => i.Position)
                .Select(i => new ImageRow(i.Id, i.FileName, null, null, i.Sha256))
                .ToListAsync(cancellation);
        var query = db.DatasetImages.AsNoTracking().Where(i => i.DatasetId == batch.DatasetId);
        if (batch.Split is { } split)
            query = query.Where(i => i.Split == split);
        return await query
            .OrderBy(i => i.Id)
            .Select(i => new ImageRow(i.Id, i.FileName, i.Label, i.Split, i.Sha256))
            .ToListAsync(cancellation);
    }

    private static async Task<float[]?[]> CachedFeaturesAsync(
        TransferDbContext db,
        string backboneId,
        List<ImageRow> images,
        CancellationToken cancellation
    )
    {
        var hashes = images.DistinctBy(i => Convert.ToHexString(i.Sha256)).Select(i => i.Sha256).ToList();
        var cached = await db
            .ImageFeatures.AsNoTracking()
            .Where(f => f.BackboneId == backboneId && hashes.Contains(f.Sha256))
            .Select(f => new { f.Sha256, f.Values })
            .ToListAsync(cancellation);
        var byHash = cached.ToDictionary(f => Convert.ToHexString(f.Sha256), f => f.Values);
        return images.Select(i => byHash.GetValueOrDefault(Convert.ToHexString(i.Sha256))).ToArray();
    }

    private static Task<int> StoreProgressAsync(TransferDbContext db, BatchPrediction batch, double share) =>
        db
            .BatchPredictions.Where(b => b.Id == batch.Id && b.Status == JobStatus.Running)
            .ExecuteUpdateAsync(s => s.SetProperty(b => b.ImagesDone, (int)(share * batch.ImagesTotal)));

    /// <summary>libtorch work on a thread of the job's priority and thread count, as training runs.</summary>
    private Task<T> OnJobThreadAsync<T>(Func<T> work) =>
        Task.Factory.StartNew(
            () =>
            {
                JobThreads.Prepare(worker.Value);
                return work();
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default
        );

    private async Task FinishAsync(TransferDbContext db, BatchPrediction batch, JobStatus status, string? error)
    {
        db.ChangeTracker.Clear();
        await EndAsync(db, webhooks, batch.Id, status, error, onlyIfQueued: false, CancellationToken.None);
    }

    /// <summary>
    /// Ends a batch prediction with its webhook event in the same transaction, and drops its uploaded images (kept only
    /// to be scored). With <paramref name="onlyIfQueued"/> only a batch no worker has started ends; false when the
    /// batch was not ended.
    /// </summary>
    public static async Task<bool> EndAsync(
        TransferDbContext db,
        WebhookPublisher webhooks,
        Guid batchId,
        JobStatus status,
        string? error,
        bool onlyIfQueued,
        CancellationToken cancellation
    )
    {
        var finishedAt = DateTime.UtcNow;
        IReadOnlyList<WebhookDelivery> events;
        await using (var transaction = await db.Database.BeginTransactionAsync(cancellation))
        {
            var ended = await db
                .BatchPredictions.Where(b => b.Id == batchId && (!onlyIfQueued || b.Status == JobStatus.Queued))
                .ExecuteUpdateAsync(
                    s =>
                        s.SetProperty(b => b.Status, status)
                            .SetProperty(b => b.Error, error)
                            .SetProperty(b => b.FinishedAt, finishedAt)
                            .SetProperty(
                                b => b.CancelRequested,
                                b => b.CancelRequested || status == JobStatus.Cancelled
                            ),
                    cancellation
                );
            if (ended == 0)
                return false;
            await db.BatchPredictionImages.Where(i => i.BatchId == batchId).ExecuteDeleteAsync(cancellation);
            var batch = await db
                .BatchPredictions.AsNoTracking()
                .Select(b => new
                {
                    b.Id,
                    b.Tenant,
                    b.ModelId,
                    b.DatasetId,
                    b.ImagesTotal,
                })
                .FirstAsync(b => b.Id == batchId, cancellation);
            events = await webhooks.AddAsync(
                db,
                batch.Tenant,
                WebhookEvents.BatchPredictionEnded(
                    batchId,
                    batch.ModelId,
                    batch.DatasetId,
                    status,
                    batch.ImagesTotal,
                    error
                ),
                cancellation
            );
            await db.SaveChangesAsync(cancellation);
            await transaction.CommitAsync(cancellation);
        }
        webhooks.Send(events);
        return true;
    }
}

/// <summary>
/// Every minute: queues again the batch predictions whose queueing was lost (a crash between the request's commit and
/// Hangfire's enqueue leaves a Queued batch without a Hangfire job). A claim on the empty job id makes one process
/// queue each.
/// </summary>
public sealed class BatchPredictionSweepService(
    IDbContextFactory<TransferDbContext> dbFactory,
    IBackgroundJobClient jobs,
    ILogger<BatchPredictionSweepService> logger
) : PeriodicService(logger)
{
    private const string Claimed = "requeueing";

    protected override TimeSpan Interval => TimeSpan.FromMinutes(1);
    protected override string Activity => "Sweeping batch predictions whose queueing was lost";

    protected override async Task RunOnceAsync(CancellationToken cancellation) => await RequeueLostAsync(cancellation);

    /// <summary>Queues the batches queued more than a minute ago without a Hangfire job; returns how many.</summary>
    public async Task<int> RequeueLostAsync(CancellationToken cancellation)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellation);
        var overdue = DateTime.UtcNow - Interval;
        var lost = await db
            .BatchPredictions.Where(b =>
                b.Status == JobStatus.Queued && b.HangfireJobId == null && b.CreatedAt < overdue
            )
            .OrderBy(b => b.CreatedAt)
            .Select(b => b.Id)
            .Take(500)
            .ToListAsync(cancellation);
        var queued = 0;
        foreach (var id in lost)
        {
            var claimed = await db
                .BatchPredictions.Where(b => b.Id == id && b.HangfireJobId == null)
                .ExecuteUpdateAsync(s => s.SetProperty(b => b.HangfireJobId, Claimed), cancellation);
            if (claimed == 0)
                continue;
            var jobId = jobs.Enqueue<BatchPredictionRunner>(r => r.RunAsync(id, CancellationToken.None));
            await db
                .BatchPredictions.Where(b => b.Id == id)
                .ExecuteUpdateAsync(s => s.SetProperty(b => b.HangfireJobId, jobId), CancellationToken.None);
            queued++;
        }
        if (queued > 0)
            logger.LogInformation("Queued {Count} batch prediction(s) whose queueing was lost", queued);
        return queued;
    }
}
