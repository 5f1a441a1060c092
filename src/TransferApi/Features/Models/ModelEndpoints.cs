using System.Diagnostics;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Training.Imaging;
using TransferApi.Training.Training;

namespace TransferApi.Features.Models;

/// <param name="BestEpoch">The epoch whose weights the model holds; the metrics are that epoch's.</param>
/// <param name="ImagesEmbedded">Images this job ran through the frozen backbone.</param>
/// <param name="FeaturesFromCache">Images whose features an earlier job had already computed (same bytes, same backbone).</param>
public sealed record ModelMetricsResponse(double? ValAccuracy, double? ValLoss, double TrainLoss, int TrainImages, int ValidationImages,
    double FeatureExtractionSeconds, double HeadTrainingSeconds, int BestEpoch, bool StoppedEarly, int ImagesEmbedded, int FeaturesFromCache);

/// <param name="FineTunedStages">Backbone stages this model fine-tuned (0: frozen backbone).</param>
public sealed record ModelResponse(Guid Id, Guid JobId, Guid DatasetId, string Backbone, HeadSpec Head, int FineTunedStages, IReadOnlyList<string> Labels, DateTime CreatedAt, ModelMetricsResponse Metrics);

public sealed record PredictionResponse(string Label, double Probability);

public sealed record PredictResponse(Guid ModelId, IReadOnlyList<PredictionResponse> Predictions, double InferenceMilliseconds);

public static class ModelEndpoints
{
    public static RouteGroupBuilder MapModelEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/models").WithTags("Models");
        group.MapGet("/", List).WithSummary("List trained models, newest first");
        group.MapGet("/{id:guid}", Get).ProducesProblem(StatusCodes.Status404NotFound).WithSummary("Read a model: labels, backbone, validation metrics");
        group.MapPost("/{id:guid}/predict", Predict)
            .DisableAntiforgery()
            .Accepts<IFormFile>("multipart/form-data")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .WithSummary("Classify one image")
            .WithDescription("multipart/form-data with one `file`. Answers the `topK` most probable labels, most probable first.");
        return group;
    }

    internal static async Task<Ok<Page<ModelResponse>>> List(TransferDbContext db, int? page, int? pageSize, CancellationToken cancellation)
    {
        var models = await db.Models.AsNoTracking().OrderByDescending(m => m.CreatedAt).Select(Summary).ToPageAsync(page, pageSize, cancellation);
        return TypedResults.Ok(models);
    }

    internal static async Task<Results<Ok<ModelResponse>, ProblemHttpResult>> Get(Guid id, TransferDbContext db, CancellationToken cancellation)
    {
        var model = await db.Models.AsNoTracking().Where(m => m.Id == id).Select(Summary).FirstOrDefaultAsync(cancellation);
        return model is null ? NotFound(id) : TypedResults.Ok(model);
    }

    /// <param name="id">The model.</param>
    /// <param name="file">The image to classify.</param>
    /// <param name="topK">How many labels to answer (default 5).</param>
    internal static async Task<Results<Ok<PredictResponse>, ProblemHttpResult>> Predict(
        Guid id, IFormFile file, TransferDbContext db, ClassifierCache classifiers, IOptions<UploadOptions> limits,
        CancellationToken cancellation, int topK = 5)
    {
        if (topK < 1)
            return TypedResults.Problem("topK: must be at least 1.", statusCode: 400, title: "Invalid topK");
        if (file.Length > limits.Value.MaxPredictBytes)
            return TypedResults.Problem($"file: '{file.FileName}' is {file.Length:N0} bytes; the limit is {limits.Value.MaxPredictBytes:N0}.", statusCode: 413, title: "Image too large");

        if (!classifiers.TryGet(id, out var classifier))
        {
            var model = await db.Models.AsNoTracking().FirstOrDefaultAsync(m => m.Id == id, cancellation);
            if (model is null) return NotFound(id);
            classifier = classifiers.GetOrLoad(id, ModelMapping.ToCheckpoint(model));
        }

        byte[] bytes;
        using (var buffer = new MemoryStream((int)file.Length))
        {
            await file.CopyToAsync(buffer, cancellation);
            bytes = buffer.ToArray();
        }
        try
        {
            ImageReader.ReadHeader(bytes, limits.Value.ImageLimits);
        }
        catch (ImageRejectedException e)
        {
            return TypedResults.Problem($"file: '{file.FileName}' {e.Message}.", statusCode: e.ExceedsLimits ? 413 : 415,
                title: e.ExceedsLimits ? "Image too large" : "Not a supported image");
        }

        var started = Stopwatch.GetTimestamp();
        IReadOnlyList<LabelProbability> predictions;
        try
        {
            predictions = classifier!.Classify([bytes], topK)[0];
        }
        catch (ImageRejectedException e)
        {
            return TypedResults.Problem($"file: '{file.FileName}' {e.Message}.", statusCode: 415, title: "Not a supported image");
        }
        return TypedResults.Ok(new PredictResponse(id, predictions.Select(p => new PredictionResponse(p.Label, p.Probability)).ToList(),
            Stopwatch.GetElapsedTime(started).TotalMilliseconds));
    }

    private static ProblemHttpResult NotFound(Guid id) => Problems.NotFound("model", id);

    private static readonly System.Linq.Expressions.Expression<Func<TrainedModel, ModelResponse>> Summary = m => new ModelResponse(
        m.Id, m.JobId, m.DatasetId, m.Backbone, m.Head, m.FineTunedStages, m.Labels, m.CreatedAt,
        new ModelMetricsResponse(m.ValAccuracy, m.ValLoss, m.TrainLoss, m.TrainImages, m.ValidationImages, m.FeatureExtractionSeconds, m.HeadTrainingSeconds,
            m.BestEpoch, m.StoppedEarly, m.ImagesEmbedded, m.FeaturesFromCache));
}
