using System.Text.Json.Serialization;
using TransferApi.Http;
using TransferApi.Persistence;

namespace TransferApi.Features.Models;

/// <summary>How the model did when it was trained (the kept epoch's numbers).</summary>
/// <param name="ValAccuracy">Share of validation images classified correctly (null without validation images).</param>
/// <param name="ValLoss">Cross-entropy on the validation images (null without them).</param>
/// <param name="TrainLoss">Mean cross-entropy over the kept epoch's training batches.</param>
/// <param name="TrainImages">Images trained on (augmented views not counted).</param>
/// <param name="ValidationImages">Images validated on.</param>
/// <param name="FeatureExtractionSeconds">Time spent running the backbone over the images.</param>
/// <param name="HeadTrainingSeconds">Time spent training the head and fine-tuning.</param>
/// <param name="BestEpoch">The epoch whose weights the model holds; the metrics are that epoch's.</param>
/// <param name="StoppedEarly">Whether early stopping ended training before the last epoch.</param>
/// <param name="ImagesEmbedded">Images this job ran through the frozen backbone.</param>
/// <param name="FeaturesFromCache">
/// Images whose features an earlier job had already computed (same bytes, same backbone).
/// </param>
public sealed record ModelMetricsResponse(
    double? ValAccuracy,
    double? ValLoss,
    double TrainLoss,
    int TrainImages,
    int ValidationImages,
    double FeatureExtractionSeconds,
    double HeadTrainingSeconds,
    int BestEpoch,
    bool StoppedEarly,
    int ImagesEmbedded,
    int FeaturesFromCache
);

/// <param name="Id">The model's id.</param>
/// <param name="JobId">The training job that produced it.</param>
/// <param name="DatasetId">The data set it was trained on.</param>
/// <param name="Backbone">The pretrained backbone it runs on.</param>
/// <param name="Head">The classifier on the backbone's features.</param>
/// <param name="FineTunedStages">Backbone stages this model fine-tuned (0: frozen backbone).</param>
/// <param name="Labels">The classes it predicts, in the order of its outputs.</param>
/// <param name="CreatedAt">When it was stored (UTC).</param>
/// <param name="Metrics">How it did when it was trained.</param>
/// <param name="Name">Models sharing a name are its versions; null until named.</param>
/// <param name="Version">This model's version under its name.</param>
/// <param name="Aliases">Aliases pointing at this version (predict with name@alias).</param>
/// <param name="SizeBytes">Bytes it stores: the head, the fine-tuned stages if any, and the novelty bank.</param>
/// <param name="Calibration">How its probabilities were calibrated (null: trained before calibration, or too few
/// images).</param>
/// <param name="Novelty">How it tells images unlike its training data (`unknown` in predictions).</param>
/// <param name="RecommendedThresholds">Each label's threshold for `threshold=auto` (null: none computed).</param>
public sealed record ModelResponse(
    Guid Id,
    Guid JobId,
    Guid DatasetId,
    string Backbone,
    HeadResponse Head,
    int FineTunedStages,
    IReadOnlyList<string> Labels,
    DateTime CreatedAt,
    ModelMetricsResponse Metrics,
    string? Name,
    int? Version,
    IReadOnlyList<string> Aliases,
    long SizeBytes,
    CalibrationResponse? Calibration,
    NoveltyResponse Novelty,
    IReadOnlyDictionary<string, double>? RecommendedThresholds
);

/// <param name="Available">Whether predictions carry `novelty` and `unknown`.</param>
/// <param name="Method">`knn`: one minus the cosine similarity to the k-th nearest training image's features.</param>
/// <param name="K">Which neighbour.</param>
/// <param name="Reference">Images the threshold was set on: `validation`, or `training (leave-one-out)`.</param>
/// <param name="ReferenceImages">How many.</param>
/// <param name="Reason">Why it is not available.</param>
public sealed record NoveltyResponse(
    bool Available,
    string? Method,
    int? K,
    string? Reference,
    int? ReferenceImages,
    string? Reason
)
{
    public static NoveltyResponse From(NoveltySettings? settings) =>
        settings is null
            ? new NoveltyResponse(
                false,
                null,
                null,
                null,
                null,
                "This model was trained before novelty detection existed (or had fewer than 2 training images); "
                    + "retrain it to get novelty and unknown in predictions."
            )
            : new NoveltyResponse(true, "knn", settings.K, settings.Reference, settings.ReferenceScores.Length, null);
}

/// <param name="Label">A class the model knows.</param>
/// <param name="Probability">The model's probability for it, 0-1.</param>
public sealed record PredictionResponse(string Label, double Probability);

/// <param name="ModelId">The model that answered.</param>
/// <param name="ModelName">Its name, if named.</param>
/// <param name="ModelVersion">Its version under that name.</param>
/// <param name="Predictions">The most probable labels, most probable first.</param>
/// <param name="InferenceMilliseconds">Decode, preprocessing, waiting for a batch and the forward pass.</param>
/// <param name="Novelty">
/// How unlike the model's training images the image is (higher is stranger); absent for models trained before
/// novelty detection (the model's `novelty.reason` says so).
/// </param>
/// <param name="Unknown">True when `novelty` is above the model's threshold: probably none of its classes.</param>
public sealed record PredictResponse(
    Guid ModelId,
    string? ModelName,
    int? ModelVersion,
    IReadOnlyList<PredictionResponse> Predictions,
    double InferenceMilliseconds,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? Novelty = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? Unknown = null
);

/// <param name="FileName">The `file` part's file name, as sent.</param>
/// <param name="Predictions">The most probable labels for it, most probable first.</param>
/// <param name="Novelty">How unlike the model's training images it is (absent for models without novelty data).</param>
/// <param name="Unknown">True when `novelty` is above the model's threshold.</param>
public sealed record FilePredictionsResponse(
    string FileName,
    IReadOnlyList<PredictionResponse> Predictions,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? Novelty = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? Unknown = null
);

/// <param name="ModelId">The model that answered.</param>
/// <param name="ModelName">Its name, if named.</param>
/// <param name="ModelVersion">Its version under that name.</param>
/// <param name="Results">One entry per `file` part, in request order.</param>
/// <param name="InferenceMilliseconds">Decode, preprocessing, waiting for batches and the forward passes.</param>
public sealed record BatchPredictResponse(
    Guid ModelId,
    string? ModelName,
    int? ModelVersion,
    IReadOnlyList<FilePredictionsResponse> Results,
    double InferenceMilliseconds
);

/// <param name="Name">The name this model becomes the next version of.</param>
public sealed record UpdateModelRequest(string? Name);
