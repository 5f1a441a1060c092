using System.Threading.Channels;
using Microsoft.EntityFrameworkCore;
using TransferApi.Persistence;
using TransferApi.Training;
using TransferApi.Training.Checkpoints;
using TransferApi.Training.FineTuning;
using TransferApi.Training.Tuning;

namespace TransferApi.Jobs;

/// <summary>
/// Carries progress and epoch metrics from the training thread to PostgreSQL. The training thread only
/// posts to a channel (never blocks on the database); one consumer writes metrics rows as epochs end and
/// the latest progress at most every <see cref="ProgressInterval"/>, caches newly computed features, and
/// keeps the latest checkpoint (a checkpoint already superseded when its turn comes is skipped). Checkpoints are
/// asked for at most every checkpoint interval (Worker:CheckpointInterval): each costs the weights and
/// optimizer state serialised and written.
/// </summary>
public sealed class JobProgressWriter : ITrainingObserver, IAsyncDisposable
{
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(500);

    private readonly Channel<object> events = Channel.CreateUnbounded<object>(
        new UnboundedChannelOptions { SingleReader = true }
    );
    private readonly IDbContextFactory<TransferDbContext> dbFactory;
    private readonly Guid jobId;
    private readonly Task consumer;
    private long lastProgressTicks;
    private int latestCheckpointEpoch;

    private readonly string backboneId;
    private readonly CheckpointStore checkpoints;
    private readonly TimeSpan checkpointInterval;
    private readonly System.Diagnostics.Stopwatch sinceCheckpoint = System.Diagnostics.Stopwatch.StartNew();
    private readonly ILogger logger;

    public JobProgressWriter(
        IDbContextFactory<TransferDbContext> dbFactory,
        CheckpointStore checkpoints,
        TimeSpan checkpointInterval,
        Guid jobId,
        string backboneId,
        ILogger logger
    )
    {
        this.dbFactory = dbFactory;
        this.checkpoints = checkpoints;
        this.checkpointInterval = checkpointInterval;
        this.jobId = jobId;
        this.backboneId = backboneId;
        this.logger = logger;
        consumer = Task.Run(ConsumeAsync);
    }

    /// <summary>Asked by the training thread only: the clock restarts when a checkpoint is handed over.</summary>
    public bool CheckpointDue => sinceCheckpoint.Elapsed >= checkpointInterval;

    /// <summary>An interval of zero means "after every epoch", never inside one.</summary>
    public bool CheckpointDueMidEpoch => checkpointInterval > TimeSpan.Zero && CheckpointDue;

    public void OnProgress(TrainingProgress progress)
    {
        var now = Environment.TickCount64;
        var important = progress.Stage == TrainingStage.Done || progress.Batch == progress.TotalBatches;
        if (!important && now - Interlocked.Read(ref lastProgressTicks) < ProgressInterval.TotalMilliseconds)
            return;
        Interlocked.Exchange(ref lastProgressTicks, now);
        events.Writer.TryWrite(progress);
    }

    public void OnEpochCompleted(EpochMetrics metrics) => events.Writer.TryWrite(metrics);

    public void OnFeaturesComputed(IReadOnlyList<ComputedFeatures> features) => events.Writer.TryWrite(features);

    public void OnActivations(ActivationUsage usage)
    {
        logger.LogInformation(
            "Training job {JobId}: fine-tuning activations {Megabytes:N0} MB, budget {Budget:N0} MB: {Storage}",
            jobId,
            usage.Bytes / 1e6,
            usage.BudgetBytes / 1e6,
            usage.Storage
        );
        events.Writer.TryWrite(usage);
    }

    public void OnTuned(TuningResult result) => events.Writer.TryWrite(result);

    public void OnCheckpoint(TrainingCheckpoint checkpoint)
    {
        sinceCheckpoint.Restart();
        Volatile.Write(ref latestCheckpointEpoch, checkpoint.Epoch);
        events.Writer.TryWrite(checkpoint);
    }

    /// <summary>Waits until everything posted so far is in the database.</summary>
    public async ValueTask DisposeAsync()
    {
        events.Writer.TryComplete();
        await consumer;
    }

    private async Task ConsumeAsync()
    {
        await using var db = await dbFactory.CreateDbContextAsync();
        await foreach (var item in events.Reader.ReadAllAsync())
        {
            switch (item)
            {
                case EpochMetrics m:
                    db.TrainingMetrics.Add(
                        new TrainingMetric
                        {
                            JobId = jobId,
                            Epoch = m.Epoch,
                            TrainLoss = m.TrainLoss,
                            ValLoss = m.ValLoss,
                            ValAccuracy = m.ValAccuracy,
                            LearningRate = m.LearningRate,
                            RecordedAt = DateTime.UtcNow,
                        }
                    );
                    break;
                case IReadOnlyList<ComputedFeatures> computed:
                    await FeatureCache.StoreAsync(db, backboneId, computed);
                    continue;
                case ActivationUsage usage:
                    await db
                        .TrainingJobs.Where(j => j.Id == jobId)
                        .ExecuteUpdateAsync(s =>
                            s.SetProperty(j => j.ActivationStorage, (ActivationStorage?)usage.Storage)
                                .SetProperty(j => j.ActivationBytes, (long?)usage.Bytes)
                                .SetProperty(j => j.ActivationBudgetBytes, (long?)usage.BudgetBytes)
                        );
                    continue;
                case TuningResult tuning:
                    // Before any checkpoint of the head it chose (the channel keeps order): a resumed job reuses it.
                    if (events.Reader.TryPeek(out var newer) && newer is TuningResult)
                        continue;
                    var tuned = await db.TrainingJobs.FirstAsync(j => j.Id == jobId);
                    tuned.Tuning = tuning;
                    break;
                case TrainingCheckpoint checkpoint:
                    if (checkpoint.Epoch < Volatile.Read(ref latestCheckpointEpoch))
                        continue;
                    var clock = System.Diagnostics.Stopwatch.StartNew();
                    // Metrics of this epoch were queued before it, so they are already stored.
                    var bytes = await checkpoints.SaveAsync(jobId, checkpoint, CancellationToken.None);
                    logger.LogInformation(
                        "Training job {JobId}: checkpoint after epoch {Epoch}{Batches} saved ({Megabytes:N1} MB in "
                            + "{Milliseconds} ms)",
                        jobId,
                        checkpoint.Epoch,
                        checkpoint.InProgress is { } partial ? $" and {partial.BatchesDone} batch(es)" : "",
                        bytes / 1e6,
                        clock.ElapsedMilliseconds
                    );
                    continue;
                case TrainingProgress p:
                    // Skip stale reports when newer ones are already queued.
                    if (events.Reader.TryPeek(out var next) && next is TrainingProgress)
                        continue;
                    var job = await db.TrainingJobs.FirstAsync(j => j.Id == jobId);
                    job.Progress = p;
                    break;
            }
            await db.SaveChangesAsync();
        }
    }
}
