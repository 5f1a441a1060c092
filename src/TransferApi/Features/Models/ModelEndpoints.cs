using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Http;
using TransferApi.Jobs;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training;
using TransferApi.Training.Export;

namespace TransferApi.Features.Models;

public static class ModelEndpoints
{
    public static RouteGroupBuilder MapModelEndpoints(this IEndpointRouteBuilder app)
    {
        var models = app.MapGroup("/api/models").WithTags("Models");
        // Everything but predict needs the train scope; predict needs only predict.
        var group = models.MapGroup("").RequireAuthorization(Caller.Train);
        group
            .MapGet("/", List)
            .WithName("ListModels")
            .WithSummary("List trained models, newest first (optionally the versions of one name)");
        group
            .MapGet("/{id}", Get)
            .WithName("GetModel")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Read a model: labels, backbone, validation metrics, name, version, aliases")
            .WithDescription(Descriptions.Id);
        group
            .MapPatch("/{id}", Update)
            .WithName("NameModel")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Name a model: it becomes that name's next version")
            .WithDescription("Aliases it had under another name are dropped. " + Descriptions.Id);
        group
            .MapDelete("/{id}", Delete)
            .WithName("DeleteModel")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Delete a model and its aliases")
            .WithDescription(Descriptions.Id);
        group
            .MapPut("/{id}/aliases/{alias}", SetAlias)
            .WithName("SetModelAlias")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Point name@alias at this version (moving it from another version)")
            .WithDescription("The model must have a name. Aliases are e.g. production, staging.");
        group
            .MapDelete("/{id}/aliases/{alias}", RemoveAlias)
            .WithName("RemoveModelAlias")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Remove an alias from this version");
        group
            .MapGet("/compare", ModelComparisonEndpoint.Compare)
            .WithName("CompareModels")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .WithSummary("Models side by side on the evaluation images they share, with McNemar's exact test")
            .WithDescription(
                """
                For 2 to 10 models (?ids=a,b: ids, names, name@version or name@alias): accuracy, macro F1, log loss
                and calibration error on the images every one was evaluated on, per-class F1, the images where they
                disagree, and for every pair McNemar's exact test of "equally accurate" (significant under 0.05),
                so a client can decide whether to move an alias. Models without shared evaluated images: 422.
                """
            );
        group
            .MapGet("/{id}/export", Export)
            .WithName("ExportModel")
            .Produces<Stream>(StatusCodes.Status200OK, "application/zip")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Download the model as a file that runs without TransferApi (zip: the network + model.json)")
            .WithDescription(Descriptions.Export);
        group.MapBatchPredictionEndpoints();
        var uploads = app.ServiceProvider.GetRequiredService<IOptions<UploadOptions>>().Value;
        var serving = app.ServiceProvider.GetRequiredService<IOptions<ServingOptions>>().Value;
        var predictLimit = uploads.MaxPredictBytes * serving.MaxImagesPerRequest + 1024 * 1024;
        models
            .MapPost("/{id}/predict", Predict)
            .WithName("Predict")
            .RequireAuthorization(Caller.Predict)
            .RequireRateLimiting(RateLimits.Predict)
            .DisableAntiforgery()
            .WithMetadata(new RequestSizeLimitAttribute(predictLimit))
            // One Accepts: routing answers 415 for any other content type (the OpenAPI document gets the image/*
            // bodies as binary).
            .Accepts<PredictForm>("multipart/form-data", [.. PredictRequestReader.RawImageContentTypes])
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .WithSummary("Classify one image, or several in one request")
            .WithDescription(Descriptions.Predict);
        return group;
    }

    /// <param name="File">One or more images, each as a part named `file`.</param>
    public sealed record PredictForm(IFormFileCollection File);

    /// <param name="name">Only the versions of this name, newest first.</param>
    internal static async Task<Ok<Page<ModelResponse>>> List(
        TransferDbContext db,
        int? page,
        int? pageSize,
        string? name,
        CancellationToken cancellation
    )
    {
        var query = db.Models.AsNoTracking();
        if (name is not null)
            query = query.Where(m => m.Name == name);
        var models = await query
            .OrderByDescending(m => m.CreatedAt)
            .Select(Summary)
            .ToPageAsync(page, pageSize, cancellation);
        return TypedResults.Ok(models);
    }

    internal static async Task<Results<Ok<ModelResponse>, ProblemHttpResult>> Get(
        string id,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var (modelId, problem) = await ResolveAsync(id, db, cancellation);
        if (problem is not null)
            return problem;
        return await FindSummaryAsync(db, modelId, cancellation) is { } answer ? TypedResults.Ok(answer) : NotFound(id);
    }

    internal static async Task<Results<Ok<ModelResponse>, ValidationProblem, ProblemHttpResult>> Update(
        string id,
        UpdateModelRequest request,
        TransferDbContext db,
        ClassifierCache cache,
        CancellationToken cancellation
    )
    {
        if (ModelNames.Problem(request.Name, "name") is { } bad)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["name"] = [$"{bad}."] });
        var (modelId, problem) = await ResolveAsync(id, db, cancellation);
        if (problem is not null)
            return problem;
        await using (var transaction = await db.Database.BeginTransactionAsync(cancellation))
        {
            // Held to the commit: a delete or another rename of this model waits, and one deleted meanwhile is not
            // found.
            var model = await RowLocks.LockModelAsync(db, modelId, cancellation);
            if (model is null)
                return NotFound(id);
            await ModelNames.AssignAsync(db, model, request.Name!, cancellation);
            await db.SaveChangesAsync(cancellation);
            await transaction.CommitAsync(cancellation);
        }
        cache.Remove(modelId);
        return await FindSummaryAsync(db, modelId, cancellation) is { } answer ? TypedResults.Ok(answer) : NotFound(id);
    }

    internal static async Task<Results<NoContent, ProblemHttpResult>> Delete(
        string id,
        TransferDbContext db,
        ClassifierCache cache,
        CancellationToken cancellation
    )
    {
        var (modelId, problem) = await ResolveAsync(id, db, cancellation);
        if (problem is not null)
            return problem;
        await using (var transaction = await db.Database.BeginTransactionAsync(cancellation))
        {
            // A concurrent delete of the same model finds nothing here and answers 404, as it would after this one.
            if (await RowLocks.LockModelAsync(db, modelId, cancellation) is null)
                return NotFound(id);
            await db
                .TrainingJobs.Where(j => j.ModelId == modelId)
                .ExecuteUpdateAsync(s => s.SetProperty(j => j.ModelId, (Guid?)null), cancellation);
            await db.Models.Where(m => m.Id == modelId).ExecuteDeleteAsync(cancellation);
            await transaction.CommitAsync(cancellation);
        }
        cache.Remove(modelId);
        return TypedResults.NoContent();
    }

    internal static async Task<Results<Ok<ModelResponse>, ProblemHttpResult>> SetAlias(
        string id,
        string alias,
        TransferDbContext db,
        WebhookPublisher webhooks,
        CancellationToken cancellation
    )
    {
        IReadOnlyList<WebhookDelivery> events;
        if (ModelNames.Problem(alias, "alias") is { } bad)
            return TypedResults.Problem($"alias: {bad}.", statusCode: 400, title: "Invalid alias");
        var (modelId, problem) = await ResolveAsync(id, db, cancellation);
        if (problem is not null)
            return problem;
        await using (var transaction = await db.Database.BeginTransactionAsync(cancellation))
        {
            // Held to the commit: the model and its name stay as read, so the alias never points at a deleted model
            // or under a name the model no longer has.
            if (await RowLocks.KeepModelAsync(db, modelId, cancellation) is not { } owner)
                return NotFound(id);
            if (owner.Name is not { } name)
                return Problems.Conflict(
                    "Model has no name",
                    $"id: model {modelId} has no name; name it first (PATCH /api/models/{modelId} with {{\"name\": "
                        + "…})."
                );
            // One statement, so two clients moving the same alias cannot leave it on two versions.
            await db.Database.ExecuteSqlInterpolatedAsync(
                $"""
                INSERT INTO model_aliases ("Tenant", "Name", "Alias", "ModelId", "UpdatedAt") VALUES ({owner.Tenant},
                    {name}, {alias}, {modelId}, {DateTime.UtcNow})
                ON CONFLICT ("Tenant", "Name", "Alias") DO UPDATE SET "ModelId" = EXCLUDED."ModelId", "UpdatedAt" =
                    EXCLUDED."UpdatedAt"
                """,
                cancellation
            );
            events = await webhooks.AddAsync(
                db,
                owner.Tenant,
                WebhookEvents.AliasMoved(name, alias, modelId, owner.Version),
                cancellation
            );
            await db.SaveChangesAsync(cancellation);
            await transaction.CommitAsync(cancellation);
        }
        webhooks.Send(events);
        return await FindSummaryAsync(db, modelId, cancellation) is { } answer ? TypedResults.Ok(answer) : NotFound(id);
    }

    internal static async Task<Results<NoContent, ProblemHttpResult>> RemoveAlias(
        string id,
        string alias,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var (modelId, problem) = await ResolveAsync(id, db, cancellation);
        if (problem is not null)
            return problem;
        var removed = await db
            .ModelAliases.Where(a => a.ModelId == modelId && a.Alias == alias)
            .ExecuteDeleteAsync(cancellation);
        return removed == 0
            ? TypedResults.Problem(
                $"alias: model {modelId} has no alias '{alias}'.",
                statusCode: 404,
                title: "Alias not found"
            )
            : TypedResults.NoContent();
    }

    /// <param name="id">A model id, name, name@version or name@alias.</param>
    /// <param name="topK">How many labels to answer per image (default 5).</param>
    /// <param name="threshold">
    /// Leave out labels below this probability, 0-1 (default 0); `auto`: below each label's recommended threshold
    /// (the model's `recommendedThresholds`, chosen on validation images).
    /// </param>
    /// <param name="rejectUnknown">When true, an image the model flags `unknown` gets no predictions.</param>
    internal static async Task<Results<Ok<PredictResponse>, Ok<BatchPredictResponse>, ProblemHttpResult>> Predict(
        string id,
        HttpRequest request,
        TransferDbContext db,
        Predictor predictor,
        IOptions<UploadOptions> uploads,
        IOptions<ServingOptions> serving,
        CancellationToken cancellation,
        int topK = 5,
        string? threshold = null,
        bool rejectUnknown = false
    )
    {
        if (topK < 1)
            return TypedResults.Problem("topK: must be at least 1.", statusCode: 400, title: "Invalid topK");
        if (!LabelFilter.TryParse(threshold, out var filter))
            return TypedResults.Problem(
                $"threshold: '{threshold}' is neither a number between 0 and 1 nor auto.",
                statusCode: 400,
                title: "Invalid threshold"
            );
        // The model first: no reason to read a body for a model that does not exist.
        var model = Guid.TryParse(id, out var guid) ? await predictor.FindAsync(guid, db, cancellation) : null;
        if (model is null)
        {
            var (modelId, problem) = await ResolveAsync(id, db, cancellation);
            if (problem is not null)
                return problem;
            model = await predictor.FindAsync(modelId, db, cancellation);
            if (model is null)
                return NotFound(id);
        }
        var classifier = model.Batcher.Classifier;
        if (filter.Auto && classifier.Checkpoint.Thresholds is null)
            return Problems.Conflict(
                "No recommended thresholds",
                $"threshold: model {model.Id} was trained without held-out images (or before thresholds were "
                    + "recommended), so it has no per-label thresholds for auto; give a number, or retrain with "
                    + "validation images."
            );
        var images = await PredictRequestReader.ReadAsync(request, uploads.Value, serving.Value, cancellation);
        var prediction = await predictor.PredictAsync(model, images, db, cancellation);
        var noveltyThreshold = classifier.Checkpoint.Novelty?.Threshold(serving.Value.NoveltyAcceptance);
        var answers = prediction
            .Scores.Select(scores =>
            {
                var unknown = scores.Novelty > noveltyThreshold;
                var labels =
                    rejectUnknown && unknown
                        ? []
                        : classifier
                            .Ranked(
                                scores.Probabilities,
                                topK,
                                filter.Value,
                                filter.Auto ? classifier.Checkpoint.Thresholds : null
                            )
                            .Select(l => new PredictionResponse(l.Label, l.Probability))
                            .ToList();
                return (Labels: labels, scores.Novelty, Unknown: scores.Novelty is null ? (bool?)null : unknown);
            })
            .ToList();
        return images.Count == 1
            ? TypedResults.Ok(
                new PredictResponse(
                    model.Id,
                    model.Name,
                    model.Version,
                    answers[0].Labels,
                    prediction.Milliseconds,
                    answers[0].Novelty,
                    answers[0].Unknown
                )
            )
            : TypedResults.Ok(
                new BatchPredictResponse(
                    model.Id,
                    model.Name,
                    model.Version,
                    images
                        .Zip(answers, (image, answer) =>
                            new FilePredictionsResponse(image.FileName, answer.Labels, answer.Novelty, answer.Unknown)
                        )
                        .ToList(),
                    prediction.Milliseconds
                )
            );
    }

    /// <param name="id">A model id, name, name@version or name@alias.</param>
    /// <param name="format">onnx, pytorch or torchsharp.</param>
    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> Export(
        string id,
        string? format,
        TransferDbContext db,
        BackboneRegistry backbones,
        InferenceThread inference,
        CancellationToken cancellation
    )
    {
        if (
            !Enum.TryParse<ExportFormat>(format, ignoreCase: true, out var exportFormat)
            || !Enum.IsDefined(exportFormat)
            || int.TryParse(format, out _)
        )
            return TypedResults.Problem(
                $"format: '{format}' is not one of onnx, pytorch, torchsharp.",
                statusCode: 400,
                title: "Invalid export format"
            );
        var (modelId, problem) = await ResolveAsync(id, db, cancellation);
        if (problem is not null)
            return problem;
        var row = await db.Models.AsNoTracking().FirstOrDefaultAsync(m => m.Id == modelId, cancellation);
        if (row is null)
            return NotFound(id);
        var checkpoint = ModelMapping.ToCheckpoint(row);
        var backbone = await backbones.GetAsync(row.Backbone);
        // libtorch work stays on the inference thread.
        var weights = await inference.RunAsync(() => ModelExport.Write(backbone, checkpoint, exportFormat));
        var fileBase = row.Name is null ? row.Id.ToString() : $"{row.Name}-v{row.Version}";
        return TypedResults.File(
            ModelExportPackage.Zip(row, checkpoint, backbone.Architecture, exportFormat, weights),
            "application/zip",
            $"{fileBase}-{exportFormat.ToString().ToLowerInvariant()}.zip"
        );
    }

    /// <summary>The model a route's id names, or the problem: 400 for a malformed id, 404 when nothing matches, 409
    /// while its job still trains.</summary>
    internal static async Task<(Guid Id, ProblemHttpResult? Problem)> ResolveAsync(
        string id,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        if (!ModelReference.TryParse(id, out var reference, out var malformed))
            return (Guid.Empty, TypedResults.Problem(malformed + ".", statusCode: 400, title: "Invalid model id"));
        if (await ModelNames.ResolveAsync(db, reference, cancellation) is { } modelId)
            return (modelId, null);
        if (
            reference.Id is { } jobId
            && await db
                .TrainingJobs.Where(j => j.Id == jobId)
                .Select(j => (JobStatus?)j.Status)
                .FirstOrDefaultAsync(cancellation)
                is { } status
        )
        {
            return (
                Guid.Empty,
                status is JobStatus.Queued or JobStatus.Running
                    ? Problems.Conflict(
                        "Model still training",
                        $"id: {jobId} is a training job that is {status}; its model will be modelId on GET "
                            + $"/api/training-jobs/{jobId}."
                    )
                    : TypedResults.Problem(
                        $"id: {jobId} is a training job ({status}), not a model; its model, if any, is modelId on GET "
                            + $"/api/training-jobs/{jobId}.",
                        statusCode: 404,
                        title: "Model not found"
                    )
            );
        }
        return (Guid.Empty, NotFound(id));
    }

    /// <summary>The model's answer, or null when it was deleted since the route's id was resolved (the caller answers
    /// 404).</summary>
    private static Task<ModelResponse?> FindSummaryAsync(
        TransferDbContext db,
        Guid modelId,
        CancellationToken cancellation
    ) => db.Models.AsNoTracking().Where(m => m.Id == modelId).Select(Summary).FirstOrDefaultAsync(cancellation);

    private static ProblemHttpResult NotFound(string id) =>
        TypedResults.Problem(
            $"id: no model is '{id}'.",
            statusCode: StatusCodes.Status404NotFound,
            title: "Model not found"
        );

    private static readonly System.Linq.Expressions.Expression<Func<TrainedModel, ModelResponse>> Summary =
        m => new ModelResponse(
            m.Id,
            m.JobId,
            m.DatasetId,
            m.Backbone,
            HeadResponse.From(m.Head),
            m.FineTunedStages,
            m.Labels,
            m.CreatedAt,
            new ModelMetricsResponse(
                m.ValAccuracy,
                m.ValLoss,
                m.TrainLoss,
                m.TrainImages,
                m.ValidationImages,
                m.FeatureExtractionSeconds,
                m.HeadTrainingSeconds,
                m.BestEpoch,
                m.StoppedEarly,
                m.ImagesEmbedded,
                m.FeaturesFromCache
            ),
            m.Name,
            m.Version,
            m.Aliases.OrderBy(a => a.Alias).Select(a => a.Alias).ToList(),
            m.HeadWeights.Length
                + (m.TailWeights == null ? 0 : m.TailWeights.Length)
                + (m.NoveltyBank == null ? 0 : m.NoveltyBank.Length * sizeof(float)),
            CalibrationResponse.From(m.Calibration),
            NoveltyResponse.From(m.Novelty),
            ByLabel(m.Labels, m.Thresholds)
        );

    /// <summary>Label → value (client side of the projection: EF cannot translate the zip).</summary>
    private static Dictionary<string, double>? ByLabel(List<string> labels, List<double>? values) =>
        values?.Zip(labels).ToDictionary(p => p.Second, p => p.First);

    private static class Descriptions
    {
        public const string Id = "A model id, name (its latest version), name@version or name@alias.";

        public const string Export =
            """
                format=onnx (ONNX Runtime), pytorch (a state dict for torch.load) or torchsharp (Module.load). The
                network takes resized, centre-cropped pixels 0..255 [N,3,S,S] in the model's channel order
                (normalization is inside) and answers class probabilities; model.json gives the size, channel order,
                resize and normalization.
                """
            + " "
            + Id;

        public const string Predict =
            """
                multipart/form-data with one `file` part (answers `predictions`) or several (answers `results`, one per
                file, as BatchPredictResponse); or one image as a raw image/* body. Answers the `topK` most probable
                labels with probability at least `threshold`, most probable first. Concurrent requests for a model
                share forward passes (dynamic batching).
                """
            + " "
            + Id;
    }
}
