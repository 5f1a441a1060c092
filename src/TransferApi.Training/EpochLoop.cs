using TransferApi.Training.Checkpoints;

namespace TransferApi.Training;

/// <summary>What an epoch loop (the head's or fine-tuning's) needs besides its data.</summary>
/// <param name="Options">The job's options: epochs, batch size, optimizer, schedule, seed.</param>
/// <param name="OnEpoch">Receives each finished epoch's metrics.</param>
/// <param name="OnBatch">Receives (epoch, batch done, batches in the epoch) after every batch.</param>
/// <param name="Cancellation">Checked between batches.</param>
/// <param name="Resume">A checkpoint of this phase to continue from.</param>
/// <param name="Checkpoints">Where resume points go, and when they are due.</param>
public sealed record EpochLoop(
    TrainingOptions Options,
    Action<EpochMetrics> OnEpoch,
    Action<int, int, int> OnBatch,
    CancellationToken Cancellation,
    TrainingCheckpoint? Resume = null,
    CheckpointSink? Checkpoints = null
)
{
    /// <summary>A loop that reports nothing.</summary>
    public static EpochLoop Quiet(TrainingOptions options, CancellationToken cancellation = default) =>
        new(options, _ => { }, (_, _, _) => { }, cancellation);
}
