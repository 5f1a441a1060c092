using System.Threading.Channels;
using Microsoft.EntityFrameworkCore;
using TransferApi.Persistence;
using TransferApi.Training;
using TransferApi.Training.Checkpoints;

namespace TransferApi.Jobs;

/// <summary>
/// Progress and newly computed features of a feature pass (<see cref="TransferLearningTrainer.Embed"/>) from the
/// computing thread to PostgreSQL: the thread only posts to a channel; one consumer caches features as they come and
/// writes progress at most twice a second.
/// </summary>
public sealed class FeaturePassWriter : ITrainingObserver, IAsyncDisposable
{
    private readonly Channel<object> events = Channel.CreateUnbounded<object>(
        new UnboundedChannelOptions { SingleReader = true }
    );
    private readonly IDbContextFactory<TransferDbContext> dbFactory;
    private readonly string backboneId;
    private readonly Func<TransferDbContext, double, Task> writeProgress;
    private readonly double featureShare;
    private readonly Task consumer;
    private long lastTicks;

    /// <param name="writeProgress">Stores the share of the whole work done (0-1).</param>
    /// <param name="featureShare">The share of the whole work the feature pass is.</param>
    public FeaturePassWriter(
        IDbContextFactory<TransferDbContext> dbFactory,
        string backboneId,
        Func<TransferDbContext, double, Task> writeProgress,
        double featureShare = 1
    )
    {
        (this.dbFactory, this.backboneId, this.writeProgress, this.featureShare) = (
            dbFactory,
            backboneId,
            writeProgress,
            featureShare
        );
        consumer = Task.Run(ConsumeAsync);
    }

    public void Report(double share)
    {
        var now = Environment.TickCount64;
        if (share < featureShare && now - Interlocked.Read(ref lastTicks) < 500)
            return;
        Interlocked.Exchange(ref lastTicks, now);
        events.Writer.TryWrite(share);
    }

    public void OnProgress(TrainingProgress progress) =>
        // Feature extraction reports up to 90 percent of a training run: rescale it onto the feature share.
        Report(featureShare * Math.Min(1, progress.Percent / 90));

    public void OnEpochCompleted(EpochMetrics metrics) { }

    public void OnFeaturesComputed(IReadOnlyList<ComputedFeatures> features) => events.Writer.TryWrite(features);

    public void OnCheckpoint(TrainingCheckpoint checkpoint) { }

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
            if (item is IReadOnlyList<ComputedFeatures> computed)
                await FeatureCache.StoreAsync(db, backboneId, computed);
            else if (item is double share && !(events.Reader.TryPeek(out var next) && next is double))
                await writeProgress(db, share);
        }
    }
}
