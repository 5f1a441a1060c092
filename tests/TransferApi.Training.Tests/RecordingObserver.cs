using TransferApi.Training.Checkpoints;
using TransferApi.Training.FineTuning;

namespace TransferApi.Training.Tests;

/// <summary>Keeps everything the trainer reports, for assertions.</summary>
/// <param name="onProgress">Runs on the training thread with each report (e.g. to cancel at a chosen batch).</param>
/// <param name="checkpointDue">When checkpoints are wanted (default: after every epoch).</param>
internal sealed class RecordingObserver(Action<TrainingProgress>? onProgress = null, Func<bool>? checkpointDue = null)
    : ITrainingObserver
{
    public List<TrainingProgress> Progress { get; } = [];
    public List<EpochMetrics> Epochs { get; } = [];
    public List<ComputedFeatures> Computed { get; } = [];
    public List<TrainingCheckpoint> Checkpoints { get; } = [];
    public List<ActivationUsage> Activations { get; } = [];
    public List<Tuning.TuningResult> Tuned { get; } = [];

    public void OnProgress(TrainingProgress progress)
    {
        Progress.Add(progress);
        onProgress?.Invoke(progress);
    }

    public void OnEpochCompleted(EpochMetrics metrics) => Epochs.Add(metrics);

    public void OnFeaturesComputed(IReadOnlyList<ComputedFeatures> features) => Computed.AddRange(features);

    public void OnCheckpoint(TrainingCheckpoint checkpoint) => Checkpoints.Add(checkpoint);

    public void OnActivations(ActivationUsage usage) => Activations.Add(usage);

    public void OnTuned(Tuning.TuningResult result) => Tuned.Add(result);

    public bool CheckpointDue => checkpointDue?.Invoke() ?? true;
}
