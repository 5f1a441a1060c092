using TransferApi.Http;
using TransferApi.Persistence;
using TransferApi.Training;

namespace TransferApi.Features.TrainingJobs;

/// <summary>Options of a training job; everything but <see cref="DatasetId"/> has a default.</summary>
/// <param name="DatasetId">The data set to train on.</param>
/// <param name="Backbone">Pretrained backbone id (default resnet18-imagenet); GET /api/backbones lists them.</param>
/// <param name="Epochs">Passes of the head over the training features, 1-1000 (default 10).</param>
/// <param name="BatchSize">Images per head optimisation step, 1-4096 (default 32).</param>
/// <param name="LearningRate">Learning rate of the head, (0, 10] (default 0.001).</param>
/// <param name="ValidationFraction">
/// Share of each class held out for validation when the data set has no validation images, [0, 0.9] (default 0.2).
/// </param>
/// <param name="Seed">Seed of the split, the shuffling and the head's initialisation (default 42).</param>
/// <param name="Head">Linear (softmax regression, the default) or Mlp (one hidden layer with ReLU and dropout).</param>
/// <param name="HiddenUnits">Mlp hidden units, 1-8192 (default 256).</param>
/// <param name="Dropout">Mlp dropout, [0, 1) (default 0.2).</param>
/// <param name="Optimizer">
/// Adam (default), AdamW, Sgd, or Lbfgs: a linear head fitted full-batch by L-BFGS until it converges (each epoch one
/// step of at most 20 iterations; learningRate, batchSize, lrSchedule and momentum do not apply).
/// </param>
/// <param name="WeightDecay">L2 penalty (Adam, Sgd, Lbfgs) or decoupled weight decay (AdamW), [0, 1] (default
/// 0).</param>
/// <param name="Momentum">Sgd momentum, [0, 1) (default 0.9).</param>
/// <param name="LrSchedule">Constant (default), Step, Cosine or OneCycle.</param>
/// <param name="StepEpochs">Step schedule: epochs between decays (default a third of the epochs).</param>
/// <param name="StepGamma">Step schedule: factor applied at each decay, (0, 1] (default 0.1).</param>
/// <param name="LabelSmoothing">[0, 1) (default 0).</param>
/// <param name="ClassWeighted">
/// Weight the loss of each class by total / (classes x its count), for imbalanced data (default false).
/// </param>
/// <param name="EarlyStopping">Stop when the monitored metric stops improving and keep the best epoch (default
/// off).</param>
/// <param name="UnfreezeStages">
/// 0 (default) keeps the backbone frozen; 1 to the backbone's stages fine-tunes its last N stages after the head has
/// converged.
/// </param>
/// <param name="FineTuneEpochs">Epochs of fine-tuning, 1-1000 (default 5).</param>
/// <param name="FineTuneLrFactor">Unfrozen stages learn at learningRate divided by this, 1-10000 (default 10).</param>
/// <param name="Augmentation">Augmented views of each training image (default off).</param>
/// <param name="TargetPrecision">
/// Each class's recommended threshold (`threshold=auto` in predict) becomes the lowest whose validation precision
/// reaches this, (0, 1] (default: the threshold with the best F1).
/// </param>
/// <param name="ModelName">
/// Name the model gets when the job succeeds, as that name's next version (predict with name, name@version or
/// name@alias).
/// </param>
/// <param name="Tuning">
/// With mode Auto, the head's recipe (a converged L2-penalised linear probe over a grid of penalties, or a
/// mini-batch recipe: learning rate, epochs, weight decay; then label smoothing, class weights, an MLP head) is
/// searched by cross-validation on the training images before training, starting from the request's; validation and
/// test images are never read by the search. Default: Auto when the request fixes none of epochs, batchSize,
/// learningRate, head, hiddenUnits, dropout, optimizer, weightDecay, momentum, lrSchedule, stepEpochs, stepGamma,
/// labelSmoothing, classWeighted and earlyStopping; Off (the recipe exactly as given) when it fixes any.
/// </param>
public sealed record CreateTrainingJobRequest(
    Guid? DatasetId,
    string? Backbone = null,
    int? Epochs = null,
    int? BatchSize = null,
    double? LearningRate = null,
    double? ValidationFraction = null,
    long? Seed = null,
    HeadKind? Head = null,
    int? HiddenUnits = null,
    double? Dropout = null,
    OptimizerKind? Optimizer = null,
    double? WeightDecay = null,
    double? Momentum = null,
    LrSchedule? LrSchedule = null,
    int? StepEpochs = null,
    double? StepGamma = null,
    double? LabelSmoothing = null,
    bool? ClassWeighted = null,
    EarlyStoppingRequest? EarlyStopping = null,
    int? UnfreezeStages = null,
    int? FineTuneEpochs = null,
    double? FineTuneLrFactor = null,
    AugmentationRequest? Augmentation = null,
    string? ModelName = null,
    double? TargetPrecision = null,
    TuningRequest? Tuning = null
);

public enum TuningMode
{
    Auto,
    Off,
}

/// <param name="Mode">Auto (search) or Off (train the recipe as given).</param>
/// <param name="BudgetSeconds">Wall time the search may take, above 0 and at most Quotas:MaxTuningBudgetSeconds
/// (default 30, and at most half of the job's feature pass when the job computes features, at least 5).</param>
/// <param name="Folds">Stratified folds of the training images, 2-20 (default 5; fewer when a class is
/// smaller).</param>
/// <param name="Metric">What chooses: LogLoss (default), Accuracy or MacroF1, cross-validated.</param>
public sealed record TuningRequest(
    TuningMode? Mode = null,
    double? BudgetSeconds = null,
    int? Folds = null,
    Training.Tuning.TuningMetric? Metric = null
);

/// <param name="Views">
/// Augmented views of each training image, embedded once per job, 0-16 (default 2 when augmentation is given).
/// </param>
/// <param name="RandomResizedCrop">Crop 50-100 % of the image at an aspect ratio of 3/4 to 4/3 (default true).</param>
/// <param name="HorizontalFlip">Mirror half of the views (default true).</param>
/// <param name="ColorJitter">Brightness, contrast and saturation varied by up to this factor, 0-1 (default
/// 0.2).</param>
public sealed record AugmentationRequest(
    int? Views = null,
    bool? RandomResizedCrop = null,
    bool? HorizontalFlip = null,
    double? ColorJitter = null
);

/// <param name="Monitor">ValLoss (default) or ValAccuracy.</param>
/// <param name="Patience">Epochs without improvement before stopping, 1-1000 (default 5).</param>
/// <param name="MinDelta">Smallest change that counts as an improvement (default 0).</param>
public sealed record EarlyStoppingRequest(
    MonitoredMetric? Monitor = null,
    int? Patience = null,
    double? MinDelta = null
);

/// <summary>Where a job is now.</summary>
/// <param name="Stage">Queued, ExtractingFeatures, Tuning, TrainingHead, FineTuning, Evaluating or Done.</param>
/// <param name="Epoch">The epoch under way within the stage (0 before the first).</param>
/// <param name="TotalEpochs">Epochs the stage will run at most (early stopping may end it sooner).</param>
/// <param name="Batch">The batch under way within the epoch or the extraction.</param>
/// <param name="TotalBatches">Batches in that epoch or extraction.</param>
/// <param name="Percent">The whole job's progress, 0-100.</param>
/// <param name="ImagesPerSecond">Throughput of the stage so far, when it is known.</param>
/// <param name="EtaSeconds">Estimated seconds until the job ends, when it can be estimated.</param>
public sealed record ProgressResponse(
    string Stage,
    int Epoch,
    int TotalEpochs,
    int Batch,
    int TotalBatches,
    double Percent,
    double? ImagesPerSecond,
    double? EtaSeconds
);

/// <summary>One finished epoch (head training, then fine-tuning, numbered on).</summary>
/// <param name="Epoch">The epoch's number, from 1.</param>
/// <param name="TrainLoss">Mean cross-entropy over the epoch's training batches.</param>
/// <param name="ValLoss">Cross-entropy on the validation images after the epoch (null without them).</param>
/// <param name="ValAccuracy">Share of validation images classified correctly after the epoch (null without
/// them).</param>
/// <param name="LearningRate">The head's learning rate during the epoch.</param>
public sealed record MetricResponse(
    int Epoch,
    double TrainLoss,
    double? ValLoss,
    double? ValAccuracy,
    double LearningRate
);

/// <summary>Where a fine-tuning job keeps the activations it trains on (Worker:ActivationMemoryBytes
/// decides).</summary>
/// <param name="Storage">
/// Memory when they fit the budget; Spilled (a temporary file) or Recomputed (from the images, every epoch) beyond
/// it.
/// </param>
/// <param name="Bytes">The activations of all the job's images and augmented views.</param>
/// <param name="BudgetBytes">The worker's memory budget for them.</param>
public sealed record ActivationsResponse(string Storage, long Bytes, long BudgetBytes);

/// <summary>Every option the job trains with, defaults filled in.</summary>
/// <param name="Epochs">Passes of the head over the training features.</param>
/// <param name="BatchSize">Images per head optimisation step.</param>
/// <param name="LearningRate">Learning rate of the head.</param>
/// <param name="ValidationFraction">Share of each class held out when the data set has no validation images.</param>
/// <param name="Seed">Seed of the split, the shuffling and the head's initialisation.</param>
/// <param name="Head">The classifier trained on the backbone's features.</param>
/// <param name="Optimizer">Adam, AdamW or Sgd.</param>
/// <param name="WeightDecay">L2 penalty (Adam, Sgd) or decoupled weight decay (AdamW).</param>
/// <param name="Momentum">Sgd momentum.</param>
/// <param name="Schedule">The learning-rate schedule: Constant, Step, Cosine or OneCycle.</param>
/// <param name="StepEpochs">Step schedule: epochs between decays (null: a third of the epochs).</param>
/// <param name="StepGamma">Step schedule: factor applied at each decay.</param>
/// <param name="LabelSmoothing">Label smoothing of the loss.</param>
/// <param name="ClassWeighted">Whether each class's loss is weighted by total / (classes x its count).</param>
/// <param name="EarlyStopping">When training stops early (null: it runs every epoch).</param>
/// <param name="UnfreezeStages">Backbone stages fine-tuned after the head (0: frozen backbone).</param>
/// <param name="FineTuneEpochs">Epochs of fine-tuning.</param>
/// <param name="FineTuneLrFactor">Unfrozen stages learn at learningRate divided by this.</param>
/// <param name="Augmentation">Augmented views of each training image.</param>
/// <param name="FeatureBatchSize">Images per backbone forward pass while extracting features.</param>
/// <param name="TargetPrecision">Precision the recommended thresholds aim at (null: best F1).</param>
/// <param name="Tuning">How the head's recipe is searched (null: it is trained as given).</param>
public sealed record TrainingOptionsResponse(
    int Epochs,
    int BatchSize,
    double LearningRate,
    double ValidationFraction,
    long Seed,
    HeadResponse Head,
    OptimizerKind Optimizer,
    double WeightDecay,
    double Momentum,
    LrSchedule Schedule,
    int? StepEpochs,
    double StepGamma,
    double LabelSmoothing,
    bool ClassWeighted,
    EarlyStoppingResponse? EarlyStopping,
    int UnfreezeStages,
    int FineTuneEpochs,
    double FineTuneLrFactor,
    AugmentationResponse Augmentation,
    int FeatureBatchSize,
    double? TargetPrecision,
    TuningOptionsResponse? Tuning
);

/// <param name="BudgetSeconds">Wall time the search may take.</param>
/// <param name="Folds">Stratified folds of the training images.</param>
/// <param name="Metric">What chooses: LogLoss, Accuracy or MacroF1.</param>
public sealed record TuningOptionsResponse(double BudgetSeconds, int Folds, Training.Tuning.TuningMetric Metric);

/// <summary>A head recipe the search tried.</summary>
/// <param name="Head">Linear or Mlp.</param>
/// <param name="Optimizer">Adam, AdamW, Sgd or Lbfgs (the converged linear probe).</param>
/// <param name="LearningRate">Learning rate of the head (not used by Lbfgs).</param>
/// <param name="WeightDecay">L2 penalty (Lbfgs, Adam) or AdamW's decoupled weight decay.</param>
/// <param name="Epochs">Passes over the training features (Lbfgs: steps of at most 20 iterations).</param>
/// <param name="LabelSmoothing">Label smoothing of the loss.</param>
/// <param name="ClassWeighted">Whether each class's loss is weighted by total / (classes x its count).</param>
/// <param name="AugmentedViews">Augmented views of each training image trained on with it (0: the job's own
/// augmentation).</param>
public sealed record HeadRecipeResponse(
    HeadKind Head,
    OptimizerKind Optimizer,
    double LearningRate,
    double WeightDecay,
    int Epochs,
    double LabelSmoothing,
    bool ClassWeighted,
    int AugmentedViews
);

/// <param name="Settings">The recipe.</param>
/// <param name="CvScore">Its metric, averaged over the folds (log loss: lower is better).</param>
/// <param name="CvStd">The metric's standard deviation over the folds.</param>
/// <param name="Seconds">What cross-validating it took.</param>
public sealed record TuningCandidateResponse(HeadRecipeResponse Settings, double CvScore, double CvStd, double Seconds);

/// <summary>The recipe search a job ran on its training images before training.</summary>
/// <param name="Candidates">Every recipe tried, in the order tried (the first is the default recipe).</param>
/// <param name="Chosen">The recipe the model was trained with (retrained on the whole training split).</param>
/// <param name="ChosenIndex">Its index in candidates.</param>
/// <param name="Metric">What chose it.</param>
/// <param name="Folds">Folds used (fewer than asked when a class is smaller).</param>
/// <param name="BudgetUsedSeconds">Wall time the search took.</param>
/// <param name="BudgetExhausted">Whether the budget ended it before every planned candidate.</param>
/// <param name="Warnings">What the search had to change or skip.</param>
public sealed record TuningResponse(
    IReadOnlyList<TuningCandidateResponse> Candidates,
    HeadRecipeResponse Chosen,
    int ChosenIndex,
    Training.Tuning.TuningMetric Metric,
    int Folds,
    double BudgetUsedSeconds,
    bool BudgetExhausted,
    IReadOnlyList<string> Warnings
);

/// <param name="Monitor">ValLoss or ValAccuracy.</param>
/// <param name="Patience">Epochs without improvement before stopping.</param>
/// <param name="MinDelta">Smallest change that counts as an improvement.</param>
public sealed record EarlyStoppingResponse(MonitoredMetric Monitor, int Patience, double MinDelta);

/// <param name="Views">Augmented views of each training image (0: no augmentation).</param>
/// <param name="RandomResizedCrop">Whether views are random crops of 50-100 % of the image.</param>
/// <param name="HorizontalFlip">Whether half of the views are mirrored.</param>
/// <param name="ColorJitter">Brightness, contrast and saturation varied by up to this factor.</param>
public sealed record AugmentationResponse(int Views, bool RandomResizedCrop, bool HorizontalFlip, double ColorJitter);

/// <param name="Id">The job's id.</param>
/// <param name="DatasetId">The data set it trains on.</param>
/// <param name="Status">Queued, Running, Succeeded, Failed or Cancelled.</param>
/// <param name="CreatedAt">When the job was created (UTC).</param>
/// <param name="StartedAt">When a worker started it (UTC).</param>
/// <param name="FinishedAt">When it ended (UTC).</param>
/// <param name="Progress">Where it is now.</param>
/// <param name="Metrics">One entry per finished epoch.</param>
/// <param name="ModelId">The model it produced, once it has one.</param>
/// <param name="Error">Why it failed.</param>
/// <param name="Backbone">The pretrained backbone it trains on.</param>
/// <param name="Options">Every option it trains with, defaults filled in.</param>
/// <param name="CheckpointEpoch">
/// While running: the last epoch saved for crash recovery (a lost worker's job resumes after it).
/// </param>
/// <param name="ResumedFromEpoch">Set when a worker took the job over from a checkpoint: the epoch it continued
/// after.</param>
/// <param name="ResumedFromBatch">
/// Set when that checkpoint was taken part way through the next epoch (a worker shutting down): the batches of it
/// already done.
/// </param>
/// <param name="ModelName">The name its model gets on success.</param>
/// <param name="Activations">Fine-tuning only: where the job keeps its activations.</param>
/// <param name="Tuning">The recipe search: its candidates so far while it runs, all of them once done (null: no
/// search, or not begun).</param>
public sealed record TrainingJobResponse(
    Guid Id,
    Guid DatasetId,
    JobStatus Status,
    DateTime CreatedAt,
    DateTime? StartedAt,
    DateTime? FinishedAt,
    ProgressResponse Progress,
    IReadOnlyList<MetricResponse> Metrics,
    Guid? ModelId,
    string? Error,
    string Backbone,
    TrainingOptionsResponse Options,
    int? CheckpointEpoch,
    int? ResumedFromEpoch,
    string? ModelName,
    int? ResumedFromBatch,
    ActivationsResponse? Activations,
    TuningResponse? Tuning
);

/// <summary>The last event of GET /api/training-jobs/{id}/events: how the job ended.</summary>
/// <param name="Id">The job's id.</param>
/// <param name="Status">Succeeded, Failed or Cancelled.</param>
/// <param name="ModelId">The model it produced, if any.</param>
/// <param name="Error">Why it failed.</param>
/// <param name="FinishedAt">When it ended (UTC).</param>
public sealed record JobEndedEvent(Guid Id, JobStatus Status, Guid? ModelId, string? Error, DateTime? FinishedAt);

/// <summary>How the job's model does on held-out images.</summary>
/// <param name="Split">"test" when the data set has test images, else "validation".</param>
/// <param name="Images">Held-out images evaluated.</param>
/// <param name="Accuracy">Share classified correctly.</param>
/// <param name="Top5Accuracy">Share whose true class is among the 5 most probable.</param>
/// <param name="MacroF1">F1 averaged over classes, each counting the same.</param>
/// <param name="LogLoss">Mean cross-entropy of the predicted probabilities.</param>
/// <param name="PerClass">Precision, recall, F1 and support of each class.</param>
/// <param name="ConfusionMatrix">Counts of true class against predicted class.</param>
/// <param name="Thresholds">Each class's precision and recall over probability thresholds, and the recommended one
/// (what `threshold=auto` applies); empty without held-out images.</param>
/// <param name="ThresholdsSplit">The images the thresholds come from: `validation`, or `test` without validation
/// images.</param>
/// <param name="Calibration">How the model's probabilities (and so these numbers) were calibrated.</param>
/// <param name="ImagesUrl">Every evaluated image with its outcome, worst first (GET …/report/images).</param>
public sealed record ClassificationReportResponse(
    string Split,
    int Images,
    double Accuracy,
    double Top5Accuracy,
    double MacroF1,
    double LogLoss,
    IReadOnlyList<ClassMetricsResponse> PerClass,
    ConfusionMatrixResponse ConfusionMatrix,
    IReadOnlyList<ClassThresholdResponse> Thresholds,
    string? ThresholdsSplit,
    CalibrationResponse? Calibration,
    string ImagesUrl
);

/// <param name="Label">The class (one against the rest).</param>
/// <param name="Recommended">The threshold to use: best F1, or the lowest reaching the job's targetPrecision.</param>
/// <param name="Precision">Precision at the recommended threshold.</param>
/// <param name="Recall">Recall at the recommended threshold.</param>
/// <param name="Curve">Precision and recall at thresholds 0, 0.01, …, 1.</param>
public sealed record ClassThresholdResponse(
    string Label,
    double Recommended,
    double Precision,
    double Recall,
    IReadOnlyList<ThresholdPointResponse> Curve
);

/// <param name="Threshold">A label is answered when its probability is at least this.</param>
/// <param name="Precision">Share of images answered with the label that have it (1 when none is).</param>
/// <param name="Recall">Share of images with the label answered with it.</param>
public sealed record ThresholdPointResponse(double Threshold, double Precision, double Recall);

/// <param name="Label">True class.</param>
/// <param name="Predicted">Predicted class.</param>
/// <param name="Count">Images in this cell.</param>
/// <param name="Images">Where to list them (GET …/report/images with label and predicted).</param>
public sealed record ConfusionCellResponse(string Label, string Predicted, int Count, string Images);

/// <param name="ImageId">The data set image.</param>
/// <param name="Label">Its true class.</param>
/// <param name="Predicted">The class the model gave it.</param>
/// <param name="Correct">Whether they agree.</param>
/// <param name="Probability">The calibrated probability of the predicted class.</param>
/// <param name="Loss">Calibrated cross-entropy of the true class: the list is sorted by it, highest first.</param>
/// <param name="Novelty">How unlike the training images it is (null for a model without novelty data).</param>
/// <param name="Image">Where to download it.</param>
/// <param name="Thumbnail">Its thumbnail (at most 128 pixels on the longer side).</param>
public sealed record EvaluatedImageResponse(
    Guid ImageId,
    string Label,
    string Predicted,
    bool Correct,
    double Probability,
    double Loss,
    double? Novelty,
    string Image,
    string Thumbnail
);

/// <param name="Label">The class.</param>
/// <param name="Precision">Of the images predicted as this class, the share that are.</param>
/// <param name="Recall">Of the images of this class, the share predicted as it.</param>
/// <param name="F1">Harmonic mean of precision and recall.</param>
/// <param name="Support">Held-out images of this class.</param>
public sealed record ClassMetricsResponse(string Label, double Precision, double Recall, double F1, int Support);

/// <param name="Labels">The classes, in the order of both axes.</param>
/// <param name="Counts">Counts[i][j]: images of class labels[i] predicted as labels[j].</param>
/// <param name="Cells">Every cell with its count and a link to its images.</param>
public sealed record ConfusionMatrixResponse(
    IReadOnlyList<string> Labels,
    IReadOnlyList<IReadOnlyList<int>> Counts,
    IReadOnlyList<ConfusionCellResponse> Cells
);
