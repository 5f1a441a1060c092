using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training;
using TransferApi.Training.Checkpoints;
using TransferApi.Training.Imaging;

namespace TransferApi.Jobs;

/// <summary>
/// Hangfire glue for one training job: reads the job and its images, runs the training core on a dedicated
/// thread, stores the model. Delivery is at least once, so a job that already ended is left alone and a
/// re-run (a lost worker, a shutdown) resumes after the job's last checkpointed epoch, dropping any later
/// metrics (they are keyed by job and epoch). A client's cancel ends the job Cancelled, with
/// the best epoch so far as its model when one exists; a server shutdown checkpoints the job at the batch it
/// stopped at and hands it back to the queue (Queued again).
/// </summary>
public sealed class TrainingJobRunner(
    IDbContextFactory<TransferDbContext> dbFactory,
    BackboneRegistry backbones,
    CheckpointStore checkpoints,
    JobDispatcher dispatcher,
    WebhookPublisher webhooks,
    IOptions<WorkerOptions> worker,
    Telemetry telemetry,
    ILogger<TrainingJobRunner> logger
)
{
    public const string Queue = "training";

    [Queue(Queue)]
    [AutomaticRetry(Attempts = 2)]
    public async Task RunAsync(Guid jobId, CancellationToken shutdown)
    {
        using var logScope = logger.BeginScope("Job {JobId}", jobId);
        await using var db = await dbFactory.CreateDbContextAsync(shutdown);
        // Only a queued (or interrupted running) job starts; a cancel that won the race leaves it alone.
        var started = await db
            .TrainingJobs.Where(j =>
                j.Id == jobId && (j.Status == JobStatus.Queued || j.Status == JobStatus.Running) && !j.CancelRequested
            )
            .ExecuteUpdateAsync(
                s =>
                    s.SetProperty(j => j.Status, JobStatus.Running)
                        .SetProperty(j => j.StartedAt, DateTime.UtcNow)
                        .SetProperty(j => j.Error, (string?)null),
                shutdown
            );
        var job = await db.TrainingJobs.FirstOrDefaultAsync(j => j.Id == jobId, shutdown);
        if (job is null)
            return;
        if (started == 0)
        {
            if (job.CancelRequested && job.Status == JobStatus.Running)
                await FinishAsync(db, jobId, JobStatus.Cancelled, model: null, error: null);
            logger.LogInformation("Training job {JobId} is {Status}; nothing to do", jobId, job.Status);
            await dispatcher.DispatchAsync(CancellationToken.None);
            return;
        }
        using var datasetScope = logger.BeginScope("Dataset {DatasetId}", job.DatasetId);
        using var span = Telemetry.StartSpan(
            "training job",
            ("transferapi.job.id", jobId),
            ("transferapi.dataset.id", job.DatasetId),
            ("transferapi.backbone", job.Backbone)
        );
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // What the run came to; an exception that escapes (a database outage) is retried by Hangfire.
        var outcome = "retried";

        await using var cancelWatch = CancellationWatcher.ForTrainingJob(dbFactory, jobId);
        using var either = CancellationTokenSource.CreateLinkedTokenSource(shutdown, cancelWatch.Token);
        try
        {
            outcome = await TrainAsync(db, job, cancelWatch, shutdown, either.Token);
            // This worker is free: the next job in turn (round-robin across tenants) goes to Hangfire.
            await dispatcher.DispatchAsync(CancellationToken.None);
        }
        catch (OperationCanceledException) when (shutdown.IsCancellationRequested)
        {
            outcome = "requeued";
            throw;
        }
        finally
        {
            ReleaseNativeMemory(jobId);
            span?.SetTag("transferapi.outcome", outcome);
            telemetry.JobDuration.Record(
                clock.Elapsed.TotalSeconds,
                new("outcome", outcome),
                new("transferapi.backbone", job.Backbone)
            );
        }
    }

    /// <summary>Hands the memory the job's tensors and decoded images freed back to the system (glibc keeps it
    /// otherwise).</summary>
    private void ReleaseNativeMemory(Guid jobId)
    {
        var before = Environment.WorkingSet;
        if (NativeMemory.Trim())
            logger.LogInformation(
                "Training job {JobId}: freed native memory returned, resident {Before:N0} MB -> {After:N0} MB "
                    + "(managed heap {Heap:N0} MB)",
                jobId,
                before / 1e6,
                Environment.WorkingSet / 1e6,
                GC.GetGCMemoryInfo().HeapSizeBytes / 1e6
            );
    }

    /// <summary>Trains a started job to its end and stores the outcome; returns it for metrics.</summary>
    private async Task<string> TrainAsync(
        TransferDbContext db,
        TrainingJob job,
        CancellationWatcher cancelWatch,
        CancellationToken shutdown,
        CancellationToken either
    )
    {
        try
        {
            var run = await PrepareAsync(db, job, either);
            var result = await RunTrainerAsync(job, run, either);
            // Before the job reads as ended: a client seeing it done sees the memory back too.
            ReleaseNativeMemory(job.Id);
            if (result.Interrupted && !cancelWatch.IsCancellationRequested)
                throw new OperationCanceledException(shutdown);
            return await StoreResultAsync(db, job, result, run.ImageIds);
        }
        catch (OperationCanceledException)
            when (cancelWatch.IsCancellationRequested && !shutdown.IsCancellationRequested)
        {
            await FinishAsync(db, job.Id, JobStatus.Cancelled, model: null, error: null);
            logger.LogInformation("Training job {JobId} cancelled before its first epoch ended; no model", job.Id);
            return "cancelled";
        }
        catch (OperationCanceledException) when (shutdown.IsCancellationRequested)
        {
            await RequeueAsync(db, job.Id);
            throw;
        }
        catch (Exception e)
            when (e is not DbUpdateException and not Npgsql.NpgsqlException and not OperationCanceledException)
        {
            // Bad input or a bug: retrying would fail the same way. Database outages propagate and are retried.
            logger.LogError(e, "Training job {JobId} failed", job.Id);
            db.ChangeTracker.Clear();
            await FinishAsync(
                db,
                job.Id,
                JobStatus.Failed,
                model: null,
                error: e is TrainingInputException ? e.Message : $"{e.GetType().Name}: {e.Message}"
            );
            System.Diagnostics.Activity.Current?.SetStatus(System.Diagnostics.ActivityStatusCode.Error, e.Message);
            return "failed";
        }
    }

    /// <summary>What the trainer gets: the backbone's trainer, the images without bytes, and where to resume.</summary>
    private sealed record PreparedRun(
        TransferLearningTrainer Trainer,
        List<LabeledImage> Images,
        List<Guid> ImageIds,
        TrainingCheckpoint? Resume
    );

    /// <summary>Loads the images and the resume point, and drops metrics of a lost run after that point.</summary>
    private async Task<PreparedRun> PrepareAsync(TransferDbContext db, TrainingJob job, CancellationToken cancellation)
    {
        var (images, imageIds) = await LoadImagesAsync(db, job, cancellation);
        var trainer = new TransferLearningTrainer(await backbones.GetAsync(job.Backbone));
        var fingerprint = trainer.Fingerprint(images, job.Options);
        var resume = await ResumePointAsync(db, job, fingerprint, cancellation);
        // Metrics after the resume point (or all, starting afresh) belong to the lost run.
        var keptEpochs = resume?.Epoch ?? 0;
        await db.TrainingMetrics.Where(m => m.JobId == job.Id && m.Epoch > keptEpochs).ExecuteDeleteAsync(cancellation);
        job.Progress = TrainingProgress.Queued(job.Options.Epochs);
        job.ResumedFromEpoch = resume?.Epoch;
        job.ResumedFromBatch = resume?.InProgress?.BatchesDone;
        await db.SaveChangesAsync(cancellation);
        var resuming = resume is null
            ? ""
            : $", resuming after epoch {resume.Epoch}"
                + (resume.InProgress is { } partial ? $" and {partial.BatchesDone} batch(es) of the next" : "");
        if (job.Tuning is { } search && search.Fingerprint == fingerprint)
            resuming += search.Partial
                ? $", continuing its recipe search after {search.Candidates.Count} candidate(s)"
                : ", with its finished recipe search";
        logger.LogInformation(
            "Training job {JobId} started on {Images} images ({Cached} with cached features) with {Backbone}{Resume}",
            job.Id,
            images.Count,
            images.Count(i => i.Features is not null),
            job.Backbone,
            resuming
        );
        return new PreparedRun(trainer, images, imageIds, resume);
    }

    /// <summary>
    /// The training core on a thread of its own (it is CPU-bound and synchronous, and TorchSharp's dispose scopes
    /// are per thread), reporting through a <see cref="JobProgressWriter"/>.
    /// </summary>
    private async Task<TrainingResult> RunTrainerAsync(TrainingJob job, PreparedRun run, CancellationToken cancellation)
    {
        await using var progress = new JobProgressWriter(
            dbFactory,
            checkpoints,
            worker.Value.CheckpointInterval,
            job.Id,
            job.Backbone,
            logger
        );
        return await Task.Factory.StartNew(
            () =>
            {
                JobThreads.Prepare(worker.Value);
                return run.Trainer.Train(
                    run.Images,
                    job.Options,
                    progress,
                    cancellation,
                    run.Resume,
                    new DatabaseImageSource(dbFactory, run.ImageIds, WorkingCopy.Serves(run.Trainer.Preprocessing)),
                    worker.Value.ActivationBudget,
                    job.Tuning
                );
            },
            cancellation,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default
        );
    }

    /// <summary>Stores the model and ends the job: Succeeded, or Cancelled with the best epoch so far.</summary>
    private async Task<string> StoreResultAsync(
        TransferDbContext db,
        TrainingJob job,
        TrainingResult result,
        List<Guid> imageIds
    )
    {
        var model = ToModel(job, result);
        job.Report = result.Report;
        job.Thresholds = result.Thresholds;
        job.Tuning = result.Tuning;
        // Saved with the model by FinishAsync's transaction.
        db.EvaluatedImages.AddRange(
            (result.EvaluatedImages ?? []).Select(e => new EvaluatedImageRow
            {
                JobId = job.Id,
                ImageId = imageIds[e.Image],
                Label = e.Label,
                Predicted = e.Predicted,
                Probability = e.Probability,
                Loss = e.Loss,
                Novelty = e.Novelty,
            })
        );
        await FinishAsync(
            db,
            job.Id,
            result.Interrupted ? JobStatus.Cancelled : JobStatus.Succeeded,
            model,
            error: null,
            result.Interrupted ? null : job.ModelName
        );
        if (result.Interrupted)
        {
            logger.LogInformation(
                "Training job {JobId} cancelled after {Epochs} epoch(s); model {ModelId} keeps epoch {BestEpoch}",
                job.Id,
                result.Metrics.Count,
                model.Id,
                result.BestEpoch
            );
            return "cancelled";
        }
        logger.LogInformation(
            "Training job {JobId} succeeded: val accuracy {ValAccuracy:P1} at epoch {BestEpoch}; features "
                + "{FeatureSeconds:N1} s ({ImagesPerSecond:N1} img/s), head {HeadSeconds:N2} s",
            job.Id,
            model.ValAccuracy,
            result.BestEpoch,
            result.Timings.FeatureExtraction.TotalSeconds,
            result.Timings.ImagesPerSecond,
            result.Timings.HeadTraining.TotalSeconds
        );
        return "succeeded";
    }

    /// <summary>
    /// The server is shutting down: the trainer checkpointed at the batch it stopped at, and the caller rethrows so
    /// Hangfire hands the job back to the queue, where the next worker resumes it from that checkpoint.
    /// </summary>
    private async Task RequeueAsync(TransferDbContext db, Guid jobId)
    {
        db.ChangeTracker.Clear();
        var stopped = await db.TrainingJobs.FirstAsync(j => j.Id == jobId, CancellationToken.None);
        if (stopped.Status == JobStatus.Running)
        {
            // Waiting for a worker again; the progress says how far it got, without a rate or an ETA.
            stopped.Status = JobStatus.Queued;
            stopped.Progress = stopped.Progress with
            {
                Stage = TrainingStage.Queued,
                ImagesPerSecond = null,
                EtaSeconds = null,
            };
            await db.SaveChangesAsync(CancellationToken.None);
        }
        logger.LogWarning(
            "Training job {JobId} handed back to the queue by shutdown; the next worker resumes it from its checkpoint",
            jobId
        );
    }

    /// <summary>The job's last checkpoint when it is this job's (same images, options and backbone) and readable;
    /// otherwise it is dropped.</summary>
    private async Task<TrainingCheckpoint?> ResumePointAsync(
        TransferDbContext db,
        TrainingJob job,
        string fingerprint,
        CancellationToken cancellation
    )
    {
        var stored = await db
            .TrainingCheckpoints.AsNoTracking()
            .Where(c => c.JobId == job.Id)
            .Select(c => c.Data)
            .FirstOrDefaultAsync(cancellation);
        if (stored is null)
            return null;
        try
        {
            var checkpoint = TrainingCheckpoint.FromBytes(stored);
            if (checkpoint.Fingerprint == fingerprint)
                return checkpoint;
            logger.LogWarning(
                "Training job {JobId}: the stored checkpoint does not match the job's images or options; starting "
                    + "afresh",
                job.Id
            );
        }
        catch (InvalidDataException e)
        {
            logger.LogWarning(e, "Training job {JobId}: the stored checkpoint is unreadable; starting afresh", job.Id);
        }
        await checkpoints.DeleteAsync(job.Id, cancellation);
        return null;
    }

    /// <summary>
    /// The data set's labelled images (unlabeled ones never train; labels, splits, content hashes) with this backbone's
    /// cached features, and their ids for
    /// <see cref="DatabaseImageSource"/>: no bytes, those are read a batch at a time as the backbone needs them
    /// (for images without cached features, or every image when fine-tuning or augmenting: activations and
    /// augmented views are not cached across jobs).
    /// </summary>
    private static async Task<(List<LabeledImage> Images, List<Guid> Ids)> LoadImagesAsync(
        TransferDbContext db,
        TrainingJob job,
        CancellationToken cancellation
    )
    {
        var rows = await db
            .DatasetImages.AsNoTracking()
            .Where(i => i.DatasetId == job.DatasetId && i.Label != null)
            .OrderBy(i => i.Id)
            .Select(i => new
            {
                i.Id,
                i.Label,
                i.Split,
                i.Sha256,
                Features = db
                    .ImageFeatures.Where(f => f.BackboneId == job.Backbone && f.Sha256 == i.Sha256)
                    .Select(f => f.Values)
                    .FirstOrDefault(),
            })
            .ToListAsync(cancellation);
        // Fine-tuning trains on activations, never on pooled features: it runs every image through the prefix.
        var fineTuning = job.Options.UnfreezeStages > 0;
        return (
            rows.Select(r => new LabeledImage(
                    r.Label!,
                    r.Split,
                    [],
                    Convert.ToHexString(r.Sha256),
                    fineTuning ? null : r.Features
                ))
                .ToList(),
            rows.Select(r => r.Id).ToList()
        );
    }

    /// <summary>
    /// Ends the job in one transaction with its model (named as the next version of <paramref name="modelName"/>)
    /// and whatever else the context holds (the report): a crash before the commit leaves it Running with its
    /// checkpoint, to be resumed; after, it is done and the checkpoint gone.
    /// </summary>
    private async Task FinishAsync(
        TransferDbContext db,
        Guid jobId,
        JobStatus status,
        TrainedModel? model,
        string? error,
        string? modelName = null
    )
    {
        var modelId = model?.Id;
        await using var transaction = await db.Database.BeginTransactionAsync(CancellationToken.None);
        if (model is not null)
        {
            db.Models.Add(model);
            if (modelName is not null)
                await ModelNames.AssignAsync(db, model, modelName, CancellationToken.None);
        }
        var finishedAt = DateTime.UtcNow;
        var events = await AddEndedEventAsync(db, jobId, status, modelId, error, finishedAt);
        await db.SaveChangesAsync(CancellationToken.None);
        await db
            .TrainingJobs.Where(j => j.Id == jobId)
            .ExecuteUpdateAsync(
                s =>
                    s.SetProperty(j => j.Status, status)
                        .SetProperty(j => j.FinishedAt, finishedAt)
                        .SetProperty(j => j.ModelId, modelId)
                        .SetProperty(j => j.Error, error)
                        .SetProperty(j => j.CheckpointEpoch, (int?)null),
                CancellationToken.None
            );
        await db.TrainingCheckpoints.Where(c => c.JobId == jobId).ExecuteDeleteAsync(CancellationToken.None);
        await transaction.CommitAsync(CancellationToken.None);
        webhooks.Send(events);
        await checkpoints.ReclaimAsync(CancellationToken.None);
    }

    /// <summary>The job's end for its tenant's webhooks, committed with it.</summary>
    private async Task<IReadOnlyList<WebhookDelivery>> AddEndedEventAsync(
        TransferDbContext db,
        Guid jobId,
        JobStatus status,
        Guid? modelId,
        string? error,
        DateTime finishedAt
    )
    {
        var job = await db
            .TrainingJobs.Where(j => j.Id == jobId)
            .Select(j => new { j.Tenant, j.DatasetId })
            .FirstAsync(CancellationToken.None);
        return await webhooks.AddAsync(
            db,
            job.Tenant,
            WebhookEvents.TrainingJobEnded(jobId, job.DatasetId, status, modelId, error, finishedAt),
            CancellationToken.None
        );
    }

    private static TrainedModel ToModel(TrainingJob job, TrainingResult result)
    {
        var best = result.BestMetrics;
        return new TrainedModel
        {
            Tenant = job.Tenant,
            Id = Guid.CreateVersion7(),
            JobId = job.Id,
            DatasetId = job.DatasetId,
            Backbone = result.Checkpoint.BackboneId,
            Labels = result.Checkpoint.Labels.ToList(),
            Preprocessing = result.Checkpoint.Preprocessing,
            FeatureSize = result.Checkpoint.FeatureSize,
            Head = result.Checkpoint.Head,
            HeadWeights = result.Checkpoint.HeadWeights,
            FineTunedStages = result.Checkpoint.FineTunedStages,
            TailWeights = result.Checkpoint.TailWeights,
            Calibration = result.Calibration,
            Novelty = result.Checkpoint.Novelty is { } novelty
                ? new NoveltySettings(novelty.K, novelty.Dimension, novelty.Reference, novelty.ReferenceScores)
                : null,
            NoveltyBank = result.Checkpoint.Novelty?.Bank,
            Thresholds = result.Checkpoint.Thresholds?.ToList(),
            CreatedAt = DateTime.UtcNow,
            ValAccuracy = best.ValAccuracy,
            ValLoss = best.ValLoss,
            TrainLoss = best.TrainLoss,
            BestEpoch = result.BestEpoch,
            StoppedEarly = result.StoppedEarly,
            TrainImages = result.TrainImages,
            ValidationImages = result.ValidationImages,
            FeatureExtractionSeconds = result.Timings.FeatureExtraction.TotalSeconds,
            ImagesEmbedded = result.Timings.ImagesEmbedded,
            FeaturesFromCache = result.Timings.FeaturesFromCache,
            HeadTrainingSeconds = result.Timings.HeadTraining.TotalSeconds,
        };
    }
}
