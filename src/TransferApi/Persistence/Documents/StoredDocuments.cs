using TransferApi.Training;
using TransferApi.Training.Evaluation;
using TransferApi.Training.Imaging;
using TransferApi.Training.Tuning;

namespace TransferApi.Persistence.Documents;

// The jsonb columns' own shapes, version 1: property names are the JSON keys rows already hold (PascalCase,
// enums by name), so renaming a training-core property changes neither what is written nor how old rows read.
// Fields a row may lack (written before the field existed) are nullable and take the core's default on reading.
// A breaking change gets a version 2 shape beside these, and the reader picks by Version.

/// <summary>A document's version: absent in rows written before versions were stored, which are version 1.</summary>
public interface IVersionedDocument
{
    int? Version { get; }
}

public sealed record HeadDocument(HeadKind? Kind, int? HiddenUnits, double? Dropout);

public sealed record EarlyStoppingDocument(MonitoredMetric? Monitor, int? Patience, double? MinDelta);

public sealed record AugmentationDocument(
    int? Views,
    bool? RandomResizedCrop,
    bool? HorizontalFlip,
    double? ColorJitter
);

public sealed record TrainingOptionsDocument(
    int? Version,
    int? Epochs,
    int? BatchSize,
    double? LearningRate,
    double? ValidationFraction,
    long? Seed,
    HeadDocument? Head,
    OptimizerKind? Optimizer,
    double? WeightDecay,
    double? Momentum,
    LrSchedule? Schedule,
    int? StepEpochs,
    double? StepGamma,
    double? LabelSmoothing,
    bool? ClassWeighted,
    EarlyStoppingDocument? EarlyStopping,
    int? UnfreezeStages,
    int? FineTuneEpochs,
    double? FineTuneLrFactor,
    AugmentationDocument? Augmentation,
    int? FeatureBatchSize,
    double? TargetPrecision,
    TuningOptionsDocument? Tuning = null
) : IVersionedDocument;

public sealed record TuningOptionsDocument(
    double BudgetSeconds,
    int Folds,
    TuningMetric Metric,
    bool FitToFeaturePass = false
);

public sealed record HeadRecipeDocument(
    HeadKind Head,
    OptimizerKind Optimizer,
    double LearningRate,
    double WeightDecay,
    int Epochs,
    double LabelSmoothing,
    bool ClassWeighted,
    int AugmentedViews = 0
);

public sealed record TuningCandidateDocument(HeadRecipeDocument Recipe, double Score, double Std, double Seconds);

public sealed record TuningResultDocument(
    int? Version,
    IReadOnlyList<TuningCandidateDocument> Candidates,
    int Chosen,
    int Folds,
    TuningMetric Metric,
    double SecondsUsed,
    bool BudgetExhausted,
    IReadOnlyList<string> Warnings,
    bool Partial = false,
    string? Fingerprint = null
) : IVersionedDocument;

public sealed record TrainingProgressDocument(
    int? Version,
    TrainingStage Stage,
    int Epoch,
    int TotalEpochs,
    int Batch,
    int TotalBatches,
    double Percent,
    double? ImagesPerSecond,
    double? EtaSeconds
) : IVersionedDocument;

public sealed record ClassMetricsDocument(string Label, double Precision, double Recall, double F1, int Support);

public sealed record ConfusionMatrixDocument(IReadOnlyList<string> Labels, IReadOnlyList<IReadOnlyList<int>> Counts);

public sealed record ClassificationReportDocument(
    int? Version,
    string Split,
    int Images,
    double Accuracy,
    double Top5Accuracy,
    double MacroF1,
    double LogLoss,
    IReadOnlyList<ClassMetricsDocument> PerClass,
    ConfusionMatrixDocument ConfusionMatrix
) : IVersionedDocument;

public sealed record CalibrationDocument(
    int? Version,
    double Temperature,
    double ExpectedCalibrationErrorBefore,
    double ExpectedCalibrationErrorAfter,
    string Method,
    int Images
) : IVersionedDocument;

public sealed record NoveltyDocument(int? Version, int K, int Dimension, string Reference, double[] ReferenceScores)
    : IVersionedDocument;

public sealed record ThresholdPointDocument(double Threshold, double Precision, double Recall);

public sealed record ClassThresholdDocument(
    string Label,
    double Recommended,
    double Precision,
    double Recall,
    IReadOnlyList<ThresholdPointDocument> Curve
);

public sealed record ThresholdReportDocument(
    int? Version,
    string Split,
    double? TargetPrecision,
    IReadOnlyList<ClassThresholdDocument> Classes
) : IVersionedDocument;

public sealed record StoredHeadDocument(int? Version, HeadKind? Kind, int? HiddenUnits, double? Dropout)
    : IVersionedDocument;

/// <summary>Rows written before per-channel normalization lack ResizeTo, ChannelMean and ChannelStd.</summary>
public sealed record PreprocessingDocument(
    int? Version,
    int InputSize,
    string Resize,
    string ChannelOrder,
    string Mean,
    float Scale,
    int? ResizeTo,
    float[]? ChannelMean,
    float[]? ChannelStd
) : IVersionedDocument;

/// <summary>The one place stored documents meet the training core's records, both ways.</summary>
public static class DocumentMapping
{
    public const int CurrentVersion = 1;

    public static TrainingOptionsDocument ToDocument(this TrainingOptions o) =>
        new(
            CurrentVersion,
            o.Epochs,
            o.BatchSize,
            o.LearningRate,
            o.ValidationFraction,
            o.Seed,
            o.Head.ToHeadDocument(),
            o.Optimizer,
            o.WeightDecay,
            o.Momentum,
            o.Schedule,
            o.StepEpochs,
            o.StepGamma,
            o.LabelSmoothing,
            o.ClassWeighted,
            o.EarlyStopping is { } stop ? new EarlyStoppingDocument(stop.Monitor, stop.Patience, stop.MinDelta) : null,
            o.UnfreezeStages,
            o.FineTuneEpochs,
            o.FineTuneLrFactor,
            new AugmentationDocument(
                o.Augmentation.Views,
                o.Augmentation.RandomResizedCrop,
                o.Augmentation.HorizontalFlip,
                o.Augmentation.ColorJitter
            ),
            o.FeatureBatchSize,
            o.TargetPrecision,
            o.Tuning is { } t ? new TuningOptionsDocument(t.BudgetSeconds, t.Folds, t.Metric, t.FitToFeaturePass) : null
        );

    public static TrainingOptions ToOptions(this TrainingOptionsDocument d)
    {
        Check(d);
        var defaults = new TrainingOptions();
        var augmentation = AugmentationOptions.None;
        return defaults with
        {
            Epochs = d.Epochs ?? defaults.Epochs,
            BatchSize = d.BatchSize ?? defaults.BatchSize,
            LearningRate = d.LearningRate ?? defaults.LearningRate,
            ValidationFraction = d.ValidationFraction ?? defaults.ValidationFraction,
            Seed = d.Seed ?? defaults.Seed,
            Head = d.Head?.ToSpec() ?? defaults.Head,
            Optimizer = d.Optimizer ?? defaults.Optimizer,
            WeightDecay = d.WeightDecay ?? defaults.WeightDecay,
            Momentum = d.Momentum ?? defaults.Momentum,
            Schedule = d.Schedule ?? defaults.Schedule,
            StepEpochs = d.StepEpochs ?? defaults.StepEpochs,
            StepGamma = d.StepGamma ?? defaults.StepGamma,
            LabelSmoothing = d.LabelSmoothing ?? defaults.LabelSmoothing,
            ClassWeighted = d.ClassWeighted ?? defaults.ClassWeighted,
            EarlyStopping = d.EarlyStopping is not { } stop
                ? null
                : new EarlyStopping(stop.Monitor ?? MonitoredMetric.ValLoss, stop.Patience ?? 5, stop.MinDelta ?? 0),
            UnfreezeStages = d.UnfreezeStages ?? defaults.UnfreezeStages,
            FineTuneEpochs = d.FineTuneEpochs ?? defaults.FineTuneEpochs,
            FineTuneLrFactor = d.FineTuneLrFactor ?? defaults.FineTuneLrFactor,
            Augmentation = d.Augmentation is not { } views
                ? defaults.Augmentation
                : new AugmentationOptions(
                    views.Views ?? augmentation.Views,
                    views.RandomResizedCrop ?? augmentation.RandomResizedCrop,
                    views.HorizontalFlip ?? augmentation.HorizontalFlip,
                    views.ColorJitter ?? augmentation.ColorJitter
                ),
            FeatureBatchSize = d.FeatureBatchSize ?? defaults.FeatureBatchSize,
            TargetPrecision = d.TargetPrecision,
            Tuning = d.Tuning is { } t
                ? new TuningOptions(t.BudgetSeconds, t.Folds, t.Metric, t.FitToFeaturePass)
                : null,
        };
    }

    public static TuningResultDocument ToDocument(this TuningResult t) =>
        new(
            CurrentVersion,
            t.Candidates.Select(c => new TuningCandidateDocument(
                    new HeadRecipeDocument(
                        c.Recipe.Head,
                        c.Recipe.Optimizer,
                        c.Recipe.LearningRate,
                        c.Recipe.WeightDecay,
                        c.Recipe.Epochs,
                        c.Recipe.LabelSmoothing,
                        c.Recipe.ClassWeighted,
                        c.Recipe.AugmentedViews
                    ),
                    c.Score,
                    c.Std,
                    c.Seconds
                ))
                .ToList(),
            t.Chosen,
            t.Folds,
            t.Metric,
            t.SecondsUsed,
            t.BudgetExhausted,
            t.Warnings,
            t.Partial,
            t.Fingerprint
        );

    public static TuningResult ToTuning(this TuningResultDocument d)
    {
        Check(d);
        return new TuningResult(
            d.Candidates.Select(c => new TuningCandidate(
                    new HeadRecipe(
                        c.Recipe.Head,
                        c.Recipe.Optimizer,
                        c.Recipe.LearningRate,
                        c.Recipe.WeightDecay,
                        c.Recipe.Epochs,
                        c.Recipe.LabelSmoothing,
                        c.Recipe.ClassWeighted,
                        c.Recipe.AugmentedViews
                    ),
                    c.Score,
                    c.Std,
                    c.Seconds
                ))
                .ToList(),
            d.Chosen,
            d.Folds,
            d.Metric,
            d.SecondsUsed,
            d.BudgetExhausted,
            d.Warnings
        )
        {
            Partial = d.Partial,
            Fingerprint = d.Fingerprint,
        };
    }

    private static HeadDocument ToHeadDocument(this HeadSpec head) => new(head.Kind, head.HiddenUnits, head.Dropout);

    private static HeadSpec ToSpec(this HeadDocument d)
    {
        var defaults = HeadSpec.Linear;
        return new HeadSpec(
            d.Kind ?? defaults.Kind,
            d.HiddenUnits ?? defaults.HiddenUnits,
            d.Dropout ?? defaults.Dropout
        );
    }

    public static StoredHeadDocument ToDocument(this HeadSpec head) =>
        new(CurrentVersion, head.Kind, head.HiddenUnits, head.Dropout);

    public static HeadSpec ToSpec(this StoredHeadDocument d)
    {
        Check(d);
        return new HeadDocument(d.Kind, d.HiddenUnits, d.Dropout).ToSpec();
    }

    public static TrainingProgressDocument ToDocument(this TrainingProgress p) =>
        new(
            CurrentVersion,
            p.Stage,
            p.Epoch,
            p.TotalEpochs,
            p.Batch,
            p.TotalBatches,
            p.Percent,
            p.ImagesPerSecond,
            p.EtaSeconds
        );

    public static TrainingProgress ToProgress(this TrainingProgressDocument d)
    {
        Check(d);
        return new TrainingProgress(
            d.Stage,
            d.Epoch,
            d.TotalEpochs,
            d.Batch,
            d.TotalBatches,
            d.Percent,
            d.ImagesPerSecond,
            d.EtaSeconds
        );
    }

    public static ClassificationReportDocument ToDocument(this ClassificationReport r) =>
        new(
            CurrentVersion,
            r.Split,
            r.Images,
            r.Accuracy,
            r.Top5Accuracy,
            r.MacroF1,
            r.LogLoss,
            r.PerClass.Select(c => new ClassMetricsDocument(c.Label, c.Precision, c.Recall, c.F1, c.Support)).ToList(),
            new ConfusionMatrixDocument(r.ConfusionMatrix.Labels, r.ConfusionMatrix.Counts)
        );

    public static ClassificationReport ToReport(this ClassificationReportDocument d)
    {
        Check(d);
        return new ClassificationReport(
            d.Split,
            d.Images,
            d.Accuracy,
            d.Top5Accuracy,
            d.MacroF1,
            d.LogLoss,
            d.PerClass.Select(c => new ClassMetrics(c.Label, c.Precision, c.Recall, c.F1, c.Support)).ToList(),
            new ConfusionMatrix(d.ConfusionMatrix.Labels, d.ConfusionMatrix.Counts)
        );
    }

    public static CalibrationDocument ToDocument(this Calibration c) =>
        new(
            CurrentVersion,
            c.Temperature,
            c.ExpectedCalibrationErrorBefore,
            c.ExpectedCalibrationErrorAfter,
            c.Method,
            c.Images
        );

    public static Calibration ToCalibration(this CalibrationDocument d)
    {
        Check(d);
        return new Calibration(
            d.Temperature,
            d.ExpectedCalibrationErrorBefore,
            d.ExpectedCalibrationErrorAfter,
            d.Method,
            d.Images
        );
    }

    public static NoveltyDocument ToDocument(this NoveltySettings n) =>
        new(CurrentVersion, n.K, n.Dimension, n.Reference, n.ReferenceScores);

    public static NoveltySettings ToSettings(this NoveltyDocument d)
    {
        Check(d);
        return new NoveltySettings(d.K, d.Dimension, d.Reference, d.ReferenceScores);
    }

    public static ThresholdReportDocument ToDocument(this ThresholdReport t) =>
        new(
            CurrentVersion,
            t.Split,
            t.TargetPrecision,
            t.Classes.Select(c => new ClassThresholdDocument(
                    c.Label,
                    c.Recommended,
                    c.Precision,
                    c.Recall,
                    c.Curve.Select(p => new ThresholdPointDocument(p.Threshold, p.Precision, p.Recall)).ToList()
                ))
                .ToList()
        );

    public static ThresholdReport ToThresholds(this ThresholdReportDocument d)
    {
        Check(d);
        return new ThresholdReport(
            d.Split,
            d.TargetPrecision,
            d.Classes.Select(c => new ClassThreshold(
                    c.Label,
                    c.Recommended,
                    c.Precision,
                    c.Recall,
                    c.Curve.Select(p => new ThresholdPoint(p.Threshold, p.Precision, p.Recall)).ToList()
                ))
                .ToList()
        );
    }

    public static PreprocessingDocument ToDocument(this PreprocessingSpec s) =>
        new(
            CurrentVersion,
            s.InputSize,
            s.Resize,
            s.ChannelOrder,
            s.Mean,
            s.Scale,
            s.ResizeTo,
            s.ChannelMean,
            s.ChannelStd
        );

    public static PreprocessingSpec ToSpec(this PreprocessingDocument d)
    {
        Check(d);
        return new PreprocessingSpec(
            d.InputSize,
            d.Resize,
            d.ChannelOrder,
            d.Mean,
            d.Scale,
            d.ResizeTo,
            d.ChannelMean,
            d.ChannelStd
        );
    }

    /// <summary>A row written by a newer service (a later version) is not guessed at.</summary>
    private static void Check(IVersionedDocument document)
    {
        if ((document.Version ?? 1) > CurrentVersion)
            throw new InvalidOperationException(
                $"A stored {document.GetType().Name} has version {document.Version}; "
                    + $"this build reads up to version {CurrentVersion}. Run the newer build, or migrate the rows."
            );
    }
}

/// <summary>One attempt to deliver a webhook event, version 1.</summary>
/// <param name="StatusCode">The receiver's HTTP status; null when no answer came (refused, timed out).</param>
/// <param name="Error">Why the attempt failed, when it did.</param>
/// <param name="Response">The start of the receiver's answer, for whoever debugs it.</param>
public sealed record DeliveryAttemptDocument(
    DateTime At,
    int? StatusCode,
    string? Error,
    double Milliseconds,
    string? Response
);

/// <summary>A label and its calibrated probability in a stored answer, version 1.</summary>
public sealed record LabelProbabilityDocument(string Label, double Probability);
