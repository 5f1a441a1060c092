using TransferApi.Http;
using TransferApi.Persistence;
using TransferApi.Training;
using TransferApi.Training.Evaluation;
using TransferApi.Training.Imaging;
using TransferApi.Training.Tuning;

namespace TransferApi.Features.TrainingJobs;

/// <summary>The one place the training-jobs contract meets the training core's records and the stored rows.</summary>
public static class TrainingJobMapping
{
    /// <summary>The request over the training core's defaults: one source of defaults and of validation.</summary>
    public static TrainingOptions ToOptions(this CreateTrainingJobRequest request)
    {
        var defaults = new TrainingOptions();
        return defaults with
        {
            Epochs = request.Epochs ?? defaults.Epochs,
            BatchSize = request.BatchSize ?? defaults.BatchSize,
            LearningRate = request.LearningRate ?? defaults.LearningRate,
            ValidationFraction = request.ValidationFraction ?? defaults.ValidationFraction,
            Seed = request.Seed ?? defaults.Seed,
            Head = new HeadSpec(
                request.Head ?? defaults.Head.Kind,
                request.HiddenUnits ?? defaults.Head.HiddenUnits,
                request.Dropout ?? defaults.Head.Dropout
            ),
            Optimizer = request.Optimizer ?? defaults.Optimizer,
            WeightDecay = request.WeightDecay ?? defaults.WeightDecay,
            Momentum = request.Momentum ?? defaults.Momentum,
            Schedule = request.LrSchedule ?? defaults.Schedule,
            StepEpochs = request.StepEpochs ?? defaults.StepEpochs,
            StepGamma = request.StepGamma ?? defaults.StepGamma,
            LabelSmoothing = request.LabelSmoothing ?? defaults.LabelSmoothing,
            ClassWeighted = request.ClassWeighted ?? defaults.ClassWeighted,
            EarlyStopping = request.EarlyStopping is not { } stop
                ? null
                : new EarlyStopping(stop.Monitor ?? MonitoredMetric.ValLoss, stop.Patience ?? 5, stop.MinDelta ?? 0),
            UnfreezeStages = request.UnfreezeStages ?? defaults.UnfreezeStages,
            FineTuneEpochs = request.FineTuneEpochs ?? defaults.FineTuneEpochs,
            FineTuneLrFactor = request.FineTuneLrFactor ?? defaults.FineTuneLrFactor,
            Augmentation = request.Augmentation is not { } views
                ? defaults.Augmentation
                : new AugmentationOptions(
                    views.Views ?? 2,
                    views.RandomResizedCrop ?? true,
                    views.HorizontalFlip ?? true,
                    views.ColorJitter ?? 0.2
                ),
            TargetPrecision = request.TargetPrecision,
            Tuning = Tuning(request),
        };
    }

    /// <summary>
    /// The search a request gets: Auto when it says so, or when it says nothing of tuning and fixes none of the head's
    /// hyperparameters (a request that fixes one, or says Off, trains exactly the recipe it describes, as before
    /// tuning existed); null for Off.
    /// </summary>
    private static TuningOptions? Tuning(CreateTrainingJobRequest r)
    {
        var mode = r.Tuning?.Mode ?? (FixesHeadRecipe(r) ? TuningMode.Off : TuningMode.Auto);
        if (mode == TuningMode.Off)
            return null;
        var defaults = new TuningOptions();
        return new TuningOptions(
            r.Tuning?.BudgetSeconds ?? defaults.BudgetSeconds,
            r.Tuning?.Folds ?? defaults.Folds,
            r.Tuning?.Metric ?? defaults.Metric,
            FitToFeaturePass: r.Tuning?.BudgetSeconds is null
        );
    }

    /// <summary>Whether the request sets any of the head's hyperparameters (the ones a search would choose or that
    /// shape its training).</summary>
    private static bool FixesHeadRecipe(CreateTrainingJobRequest r) =>
        r.Epochs is not null
        || r.BatchSize is not null
        || r.LearningRate is not null
        || r.Head is not null
        || r.HiddenUnits is not null
        || r.Dropout is not null
        || r.Optimizer is not null
        || r.WeightDecay is not null
        || r.Momentum is not null
        || r.LrSchedule is not null
        || r.StepEpochs is not null
        || r.StepGamma is not null
        || r.LabelSmoothing is not null
        || r.ClassWeighted is not null
        || r.EarlyStopping is not null;

    public static TuningResponse ToResponse(this TuningResult t) =>
        new(
            t.Candidates.Select(c => new TuningCandidateResponse(
                    c.Recipe.ToResponse(),
                    Math.Round(c.Score, 5),
                    Math.Round(c.Std, 5),
                    Math.Round(c.Seconds, 3)
                ))
                .ToList(),
            t.ChosenRecipe.ToResponse(),
            t.Chosen,
            t.Metric,
            t.Folds,
            Math.Round(t.SecondsUsed, 2),
            t.BudgetExhausted,
            t.Warnings
        );

    private static HeadRecipeResponse ToResponse(this HeadRecipe r) =>
        new(
            r.Head,
            r.Optimizer,
            r.LearningRate,
            r.WeightDecay,
            r.Epochs,
            r.LabelSmoothing,
            r.ClassWeighted,
            r.AugmentedViews
        );

    public static TrainingJobResponse ToResponse(this TrainingJob job) =>
        new(
            job.Id,
            job.DatasetId,
            job.Status,
            job.CreatedAt,
            job.StartedAt,
            job.FinishedAt,
            job.Progress.ToResponse(),
            job.Metrics.OrderBy(m => m.Epoch).Select(ToResponse).ToList(),
            job.ModelId,
            job.Error,
            job.Backbone,
            job.Options.ToResponse(),
            job.CheckpointEpoch,
            job.ResumedFromEpoch,
            job.ModelName,
            job.ResumedFromBatch,
            job.ActivationStorage is { } storage
                ? new ActivationsResponse(storage.ToString(), job.ActivationBytes ?? 0, job.ActivationBudgetBytes ?? 0)
                : null,
            job.Tuning?.ToResponse()
        );

    public static ProgressResponse ToResponse(this TrainingProgress p) =>
        new(
            p.Stage.ToString(),
            p.Epoch,
            p.TotalEpochs,
            p.Batch,
            p.TotalBatches,
            Math.Round(p.Percent, 2),
            p.ImagesPerSecond is { } rate ? Math.Round(rate, 2) : null,
            p.EtaSeconds is { } eta ? Math.Round(eta, 1) : null
        );

    public static MetricResponse ToResponse(this TrainingMetric m) =>
        new(m.Epoch, m.TrainLoss, m.ValLoss, m.ValAccuracy, m.LearningRate);

    public static JobEndedEvent ToEndedEvent(this TrainingJob job) =>
        new(job.Id, job.Status, job.ModelId, job.Error, job.FinishedAt);

    public static TrainingOptionsResponse ToResponse(this TrainingOptions o) =>
        new(
            o.Epochs,
            o.BatchSize,
            o.LearningRate,
            o.ValidationFraction,
            o.Seed,
            HeadResponse.From(o.Head),
            o.Optimizer,
            o.WeightDecay,
            o.Momentum,
            o.Schedule,
            o.StepEpochs,
            o.StepGamma,
            o.LabelSmoothing,
            o.ClassWeighted,
            o.EarlyStopping is { } stop ? new EarlyStoppingResponse(stop.Monitor, stop.Patience, stop.MinDelta) : null,
            o.UnfreezeStages,
            o.FineTuneEpochs,
            o.FineTuneLrFactor,
            new AugmentationResponse(
                o.Augmentation.Views,
                o.Augmentation.RandomResizedCrop,
                o.Augmentation.HorizontalFlip,
                o.Augmentation.ColorJitter
            ),
            o.FeatureBatchSize,
            o.TargetPrecision,
            o.Tuning is { } t ? new TuningOptionsResponse(t.BudgetSeconds, t.Folds, t.Metric) : null
        );

    public static ClassificationReportResponse ToResponse(
        this ClassificationReport report,
        Guid jobId,
        ThresholdReport? thresholds,
        Calibration? calibration
    )
    {
        var matrix = report.ConfusionMatrix;
        var imagesUrl = $"/api/training-jobs/{jobId}/report/images";
        return new(
            report.Split,
            report.Images,
            report.Accuracy,
            report.Top5Accuracy,
            report.MacroF1,
            report.LogLoss,
            report
                .PerClass.Select(c => new ClassMetricsResponse(c.Label, c.Precision, c.Recall, c.F1, c.Support))
                .ToList(),
            new ConfusionMatrixResponse(
                matrix.Labels,
                matrix.Counts,
                [
                    .. from t in Enumerable.Range(0, matrix.Labels.Count)
                    from p in Enumerable.Range(0, matrix.Labels.Count)
                    select new ConfusionCellResponse(
                        matrix.Labels[t],
                        matrix.Labels[p],
                        matrix.Counts[t][p],
                        $"{imagesUrl}?label={Uri.EscapeDataString(matrix.Labels[t])}"
                            + $"&predicted={Uri.EscapeDataString(matrix.Labels[p])}"
                    ),
                ]
            ),
            thresholds
                ?.Classes.Select(c => new ClassThresholdResponse(
                    c.Label,
                    c.Recommended,
                    c.Precision,
                    c.Recall,
                    c.Curve.Select(p => new ThresholdPointResponse(p.Threshold, p.Precision, p.Recall)).ToList()
                ))
                .ToList()
                ?? [],
            thresholds?.Split,
            CalibrationResponse.From(calibration),
            imagesUrl
        );
    }

    public static EvaluatedImageResponse ToResponse(this EvaluatedImageRow row, Guid datasetId)
    {
        var image = $"/api/datasets/{datasetId}/images/{row.ImageId}";
        return new EvaluatedImageResponse(
            row.ImageId,
            row.Label,
            row.Predicted,
            row.Label == row.Predicted,
            row.Probability,
            row.Loss,
            row.Novelty,
            image,
            image + "?thumbnail=true"
        );
    }
}
