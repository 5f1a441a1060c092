using TransferApi.Training.Training;

namespace TransferApi.Training.Tests;

/// <summary>Keeps everything the trainer reports, for assertions.</summary>
internal sealed class RecordingObserver : ITrainingObserver
{
    public List<TrainingProgress> Progress { get; } = [];
    public List<EpochMetrics> Epochs { get; } = [];
    public List<ComputedFeatures> Computed { get; } = [];
    public List<TrainingCheckpoint> Checkpoints { get; } = [];

    public void OnProgress(TrainingProgress progress) => Progress.Add(progress);
    public void OnEpochCompleted(EpochMetrics metrics) => Epochs.Add(metrics);
    public void OnFeaturesComputed(IReadOnlyList<ComputedFeatures> features) => Computed.AddRange(features);
    public void OnCheckpoint(TrainingCheckpoint checkpoint) => Checkpoints.Add(checkpoint);
}
