namespace TransferApi.Training.Training;

/// <summary>Which part of the data an image belongs to; <see cref="Unassigned"/> images are split by the trainer.</summary>
public enum DataSplit { Unassigned = 0, Train = 1, Validation = 2, Test = 3 }

/// <summary>One labelled training image as encoded bytes (the trainer decodes it with the backbone's preprocessing).</summary>
public sealed record LabeledImage(string Label, DataSplit Split, byte[] Bytes);

public sealed record TrainingOptions
{
    public int Epochs { get; init; } = 10;
    public int BatchSize { get; init; } = 32;
    public double LearningRate { get; init; } = 0.001;
    public double ValidationFraction { get; init; } = 0.2;
    public long Seed { get; init; } = 42;
    /// <summary>Images per backbone forward pass while extracting features.</summary>
    public int FeatureBatchSize { get; init; } = 32;
}

public enum TrainingStage { Queued, ExtractingFeatures, TrainingHead, FineTuning, Evaluating, Done }

public sealed record TrainingProgress(
    TrainingStage Stage, int Epoch, int TotalEpochs, int Batch, int TotalBatches,
    double Percent, double? ImagesPerSecond, double? EtaSeconds);

public sealed record EpochMetrics(int Epoch, double TrainLoss, double? ValLoss, double? ValAccuracy);

/// <summary>Receives progress from the training thread; implementations must return quickly.</summary>
public interface ITrainingObserver
{
    void OnProgress(TrainingProgress progress);
    void OnEpochCompleted(EpochMetrics metrics);
}

public sealed record TrainingTimings(TimeSpan FeatureExtraction, TimeSpan HeadTraining, int ImagesEmbedded)
{
    public double ImagesPerSecond => ImagesEmbedded / Math.Max(FeatureExtraction.TotalSeconds, 1e-9);
}

public sealed record TrainingResult(ModelCheckpoint Checkpoint, IReadOnlyList<EpochMetrics> Metrics, TrainingTimings Timings, int TrainImages, int ValidationImages);

/// <summary>A problem with the training input itself (retrying cannot help).</summary>
public sealed class TrainingInputException(string message) : Exception(message);
