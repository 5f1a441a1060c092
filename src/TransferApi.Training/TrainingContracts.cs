using TransferApi.Training.Checkpoints;
using TransferApi.Training.Evaluation;
using TransferApi.Training.FineTuning;

namespace TransferApi.Training;

/// <summary>Which part of the data an image belongs to; <see cref="Unassigned"/> images are split by the
/// trainer.</summary>
public enum DataSplit
{
    Unassigned = 0,
    Train = 1,
    Validation = 2,
    Test = 3,

    /// <summary>Stored without a label: embedded and analysed, never trained on or evaluated.</summary>
    Unlabeled = 4,
}

/// <summary>
/// One labelled image. <see cref="Features"/>, when given, are this backbone's features of the image from an
/// earlier run and spare the backbone pass (then <see cref="Bytes"/> may be empty); <see cref="ContentKey"/>
/// names the image's content (its SHA-256) so newly computed features can be cached under it.
/// </summary>
public sealed record LabeledImage(
    string Label,
    DataSplit Split,
    byte[] Bytes,
    string? ContentKey = null,
    float[]? Features = null
);

/// <summary>An image to embed: its cached features when known (then its bytes are never read), and the content key its
/// newly computed features are reported under.</summary>
public sealed record ImageToEmbed(string? ContentKey, float[]? Features);

/// <summary>Backbone features computed for an image during a run, to be cached under its content key.</summary>
public sealed record ComputedFeatures(string ContentKey, float[] Features);

public enum HeadKind
{
    Linear,
    Mlp,
}

public enum OptimizerKind
{
    Adam,
    AdamW,
    Sgd,

    /// <summary>Full-batch L-BFGS on the L2-penalised softmax regression of standardised features (linear heads
    /// only): converges where a mini-batch optimizer stops after its epochs. Each epoch is one L-BFGS step of at most
    /// <see cref="Heads.HeadTrainer.LbfgsIterationsPerEpoch"/> iterations; weightDecay is the L2 strength;
    /// learningRate, batchSize, lrSchedule and momentum do not apply.</summary>
    Lbfgs,
}

public enum LrSchedule
{
    Constant,
    Step,
    Cosine,
    OneCycle,
}

public enum MonitoredMetric
{
    ValLoss,
    ValAccuracy,
}

/// <summary>The classifier trained on the backbone's features: its shape is part of every checkpoint.</summary>
public sealed record HeadSpec(HeadKind Kind = HeadKind.Linear, int HiddenUnits = 256, double Dropout = 0.2)
{
    public static HeadSpec Linear { get; } = new();
}

/// <summary>Stop when <see cref="Monitor"/> has not improved by <see cref="MinDelta"/> for <see cref="Patience"/>
/// epochs; keep the best epoch.</summary>
public sealed record EarlyStopping(
    MonitoredMetric Monitor = MonitoredMetric.ValLoss,
    int Patience = 5,
    double MinDelta = 0
);

public sealed record TrainingOptions
{
    public int Epochs { get; init; } = 10;
    public int BatchSize { get; init; } = 32;
    public double LearningRate { get; init; } = 0.001;
    public double ValidationFraction { get; init; } = 0.2;
    public long Seed { get; init; } = 42;
    public HeadSpec Head { get; init; } = HeadSpec.Linear;
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Adam;
    public double WeightDecay { get; init; }

    /// <summary>SGD momentum (ignored by Adam and AdamW).</summary>
    public double Momentum { get; init; } = 0.9;
    public LrSchedule Schedule { get; init; } = LrSchedule.Constant;

    /// <summary>Step schedule: epochs between decays (default: a third of the epochs) and the factor applied.</summary>
    public int? StepEpochs { get; init; }
    public double StepGamma { get; init; } = 0.1;
    public double LabelSmoothing { get; init; }

    /// <summary>Weight each class's loss by total / (classes x its count), so rare classes count as much as common
    /// ones.</summary>
    public bool ClassWeighted { get; init; }
    public EarlyStopping? EarlyStopping { get; init; }

    /// <summary>Stages of the backbone trained after the head has converged: 0 keeps it frozen, N the last N (at most
    /// the backbone's stages, 3 or 4).</summary>
    public int UnfreezeStages { get; init; }

    /// <summary>Epochs of fine-tuning (only with <see cref="UnfreezeStages"/> above 0).</summary>
    public int FineTuneEpochs { get; init; } = 5;

    /// <summary>Unfrozen stages learn at <see cref="LearningRate"/> divided by this (discriminative learning
    /// rates).</summary>
    public double FineTuneLrFactor { get; init; } = 10;

    /// <summary>Augmented views of each training image, embedded once per job and trained on with the originals (off by
    /// default).</summary>
    public Imaging.AugmentationOptions Augmentation { get; init; } = Imaging.AugmentationOptions.None;

    /// <summary>Each class's recommended threshold is the lowest reaching this precision on validation (null: the best
    /// F1).</summary>
    public double? TargetPrecision { get; init; }

    /// <summary>Images per backbone forward pass while extracting features.</summary>
    public int FeatureBatchSize { get; init; } = 32;

    /// <summary>Search the head's recipe by cross-validation on the training images before training (null: train the
    /// recipe above as it is).</summary>
    public Tuning.TuningOptions? Tuning { get; init; }

    /// <summary>Every invalid option as (field, message): the one place options are checked, by the API and the
    /// trainer.</summary>
    public IReadOnlyList<(string Field, string Message)> Problems()
    {
        var problems = new List<(string, string)>();
        void Check(bool ok, string field, string message)
        {
            if (!ok)
                problems.Add((field, message));
        }
        Check(Epochs is >= 1 and <= 1000, "epochs", "epochs must be between 1 and 1000.");
        Check(BatchSize is >= 1 and <= 4096, "batchSize", "batchSize must be between 1 and 4096.");
        Check(
            LearningRate > 0 && LearningRate <= 10,
            "learningRate",
            "learningRate must be greater than 0 and at most 10."
        );
        Check(
            ValidationFraction is >= 0 and <= 0.9,
            "validationFraction",
            "validationFraction must be between 0 and 0.9."
        );
        Check(Enum.IsDefined(Head.Kind), "head", "head must be Linear or Mlp.");
        Check(Head.HiddenUnits is >= 1 and <= 8192, "hiddenUnits", "hiddenUnits must be between 1 and 8192.");
        Check(Head.Dropout is >= 0 and < 1, "dropout", "dropout must be at least 0 and below 1.");
        Check(Enum.IsDefined(Optimizer), "optimizer", "optimizer must be Adam, AdamW, Sgd or Lbfgs.");
        Check(
            Optimizer != OptimizerKind.Lbfgs || Head.Kind == HeadKind.Linear,
            "optimizer",
            "optimizer Lbfgs fits linear heads only: use head Linear, or another optimizer for an Mlp head."
        );
        Check(WeightDecay is >= 0 and <= 1, "weightDecay", "weightDecay must be between 0 and 1.");
        Check(Momentum is >= 0 and < 1, "momentum", "momentum must be at least 0 and below 1.");
        Check(Enum.IsDefined(Schedule), "lrSchedule", "lrSchedule must be Constant, Step, Cosine or OneCycle.");
        Check(StepEpochs is null or >= 1, "stepEpochs", "stepEpochs must be at least 1.");
        Check(StepGamma is > 0 and <= 1, "stepGamma", "stepGamma must be greater than 0 and at most 1.");
        Check(LabelSmoothing is >= 0 and < 1, "labelSmoothing", "labelSmoothing must be at least 0 and below 1.");
        Check(
            TargetPrecision is null or (> 0 and <= 1),
            "targetPrecision",
            "targetPrecision must be greater than 0 and at most 1."
        );
        Check(FeatureBatchSize >= 1, "featureBatchSize", "featureBatchSize must be at least 1.");
        Check(
            UnfreezeStages is >= 0 and <= 4,
            "unfreezeStages",
            "unfreezeStages must be between 0 (frozen backbone) and 4."
        );
        Check(FineTuneEpochs is >= 1 and <= 1000, "fineTuneEpochs", "fineTuneEpochs must be between 1 and 1000.");
        Check(
            FineTuneLrFactor is >= 1 and <= 10000,
            "fineTuneLrFactor",
            "fineTuneLrFactor must be between 1 and 10000."
        );
        Check(
            Augmentation.Views is >= 0 and <= 16,
            "augmentation.views",
            "augmentation.views must be between 0 and 16."
        );
        Check(
            Augmentation.ColorJitter is >= 0 and <= 1,
            "augmentation.colorJitter",
            "augmentation.colorJitter must be between 0 and 1."
        );
        if (EarlyStopping is { } stop)
        {
            Check(
                Enum.IsDefined(stop.Monitor),
                "earlyStopping.monitor",
                "earlyStopping.monitor must be ValLoss or ValAccuracy."
            );
            Check(
                stop.Patience is >= 1 and <= 1000,
                "earlyStopping.patience",
                "earlyStopping.patience must be between 1 and 1000."
            );
            Check(stop.MinDelta >= 0, "earlyStopping.minDelta", "earlyStopping.minDelta must be at least 0.");
        }
        if (Tuning is not null)
            problems.AddRange(Tuning.Problems());
        return problems;
    }
}

public enum TrainingStage
{
    Queued,
    ExtractingFeatures,
    TrainingHead,

    /// <summary>Cross-validating head recipes on the training features (Batch: candidates done of
    /// TotalBatches).</summary>
    Tuning,
    FineTuning,
    Evaluating,
    Done,
}

public sealed record TrainingProgress(
    TrainingStage Stage,
    int Epoch,
    int TotalEpochs,
    int Batch,
    int TotalBatches,
    double Percent,
    double? ImagesPerSecond,
    double? EtaSeconds
)
{
    public static TrainingProgress Queued(int totalEpochs) =>
        new(TrainingStage.Queued, 0, totalEpochs, 0, 0, 0, null, null);
}

public sealed record EpochMetrics(
    int Epoch,
    double TrainLoss,
    double? ValLoss,
    double? ValAccuracy,
    double LearningRate
);

/// <summary>Receives progress from the training thread; implementations must return quickly.</summary>
public interface ITrainingObserver
{
    void OnProgress(TrainingProgress progress);
    void OnEpochCompleted(EpochMetrics metrics);

    /// <summary>Features the backbone computed in this run (for images with a content key), a batch at a
    /// time.</summary>
    void OnFeaturesComputed(IReadOnlyList<ComputedFeatures> features);

    /// <summary>Where a fine-tuning run keeps its activations, said once its first batch shows their size.</summary>
    void OnActivations(ActivationUsage usage) { }

    /// <summary>The recipe search after each candidate (<see cref="Tuning.TuningResult.Partial"/>) and once finished,
    /// before the head trains: the latest one kept lets a resumed job continue or skip the search (<see
    /// cref="TransferLearningTrainer.Train"/>'s searched).</summary>
    void OnTuned(Tuning.TuningResult result) { }

    /// <summary>
    /// Where the job can resume if the process stops: after an epoch or between batches whenever
    /// <see cref="CheckpointDue"/> says so, and always between batches when cancelled. Each one supersedes the
    /// previous, so an observer that falls behind may keep only the latest.
    /// </summary>
    void OnCheckpoint(TrainingCheckpoint checkpoint);

    /// <summary>
    /// Whether a crash-recovery checkpoint is wanted at the end of this epoch. A checkpoint costs the weights and
    /// optimizer state serialised (hundreds of megabytes while fine-tuning), so an observer that stores them says
    /// yes only every so often. By default: after every epoch.
    /// </summary>
    bool CheckpointDue => true;

    /// <summary>Whether one is wanted between two batches, so a long epoch does not go unsaved. By default:
    /// never.</summary>
    bool CheckpointDueMidEpoch => false;
}

/// <summary>Where a training loop reports its resume points, and when it should.</summary>
/// <param name="IsDue">Asked after each epoch: whether to report one now.</param>
/// <param name="Save">Receives each checkpoint.</param>
/// <param name="IsDueMidEpoch">Asked between batches: whether to pause the epoch for one (it then goes on).</param>
public sealed record CheckpointSink(Func<bool> IsDue, Action<TrainingCheckpoint> Save, Func<bool>? IsDueMidEpoch = null)
{
    public static CheckpointSink For(
        ITrainingObserver observer,
        Func<TrainingCheckpoint, TrainingCheckpoint> complete
    ) =>
        new(
            () => observer.CheckpointDue,
            checkpoint => observer.OnCheckpoint(complete(checkpoint)),
            () => observer.CheckpointDueMidEpoch
        );
}

/// <param name="ImagesEmbedded">Images run through the backbone in this job.</param>
/// <param name="FeaturesFromCache">Images whose features came from an earlier run instead.</param>
/// <param name="Assessment">Calibration, novelty, thresholds and the report after training.</param>
public sealed record TrainingTimings(
    TimeSpan FeatureExtraction,
    TimeSpan HeadTraining,
    int ImagesEmbedded,
    int FeaturesFromCache = 0,
    TimeSpan Assessment = default
)
{
    public double ImagesPerSecond => ImagesEmbedded / Math.Max(FeatureExtraction.TotalSeconds, 1e-9);
}

/// <param name="BestEpoch">The epoch whose weights the model keeps (the last, unless early stopping chose
/// another).</param>
/// <param name="Interrupted">Cancelled after at least one epoch: the checkpoint holds the best epoch completed so
/// far.</param>
/// <param name="Report">The model on the test split (or validation when there is none); null without held-out
/// images.</param>
/// <param name="FineTuned">Unfrozen stages the model keeps (0 when fine-tuning did not beat the frozen backbone on
/// validation).</param>
/// <param name="Activations">Where fine-tuning kept its activations (null for a frozen backbone).</param>
/// <param name="Calibration">Temperature scaling, fitted on the validation images, or on out-of-fold training images
/// when validation has too few (null when neither is possible).</param>
/// <param name="Thresholds">Each class's precision and recall over thresholds, on validation (test without it).</param>
/// <param name="EvaluatedImages">Every image of the report's split with its outcome, worst loss first.</param>
public sealed record TrainingResult(
    ModelCheckpoint Checkpoint,
    IReadOnlyList<EpochMetrics> Metrics,
    TrainingTimings Timings,
    int TrainImages,
    int ValidationImages,
    int BestEpoch,
    bool StoppedEarly,
    bool Interrupted,
    ClassificationReport? Report,
    int FineTuned = 0,
    ActivationUsage? Activations = null,
    Calibration? Calibration = null,
    ThresholdReport? Thresholds = null,
    IReadOnlyList<EvaluatedImage>? EvaluatedImages = null,
    Tuning.TuningResult? Tuning = null
)
{
    public EpochMetrics BestMetrics => Metrics.First(m => m.Epoch == BestEpoch);
}

/// <summary>A problem with the training input itself (retrying cannot help).</summary>
public sealed class TrainingInputException(string message) : Exception(message);
