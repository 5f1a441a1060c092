using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using TransferApi.Http;
using TransferApi.Jobs;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training;
using TransferApi.Training.Health;
using TransferApi.Training.Inference;
using static TorchSharp.torch;

namespace TransferApi.Features.Datasets;

/// <summary>A data set's health report, which unlabeled images to label next, and its embedding map.</summary>
public static class DatasetHealthEndpoints
{
    public const int MaxSuggestions = 100;

    public static RouteGroupBuilder MapDatasetHealthEndpoints(this RouteGroupBuilder datasets)
    {
        datasets
            .MapGet("/{id:guid}/health", Get)
            .WithName("GetDatasetHealth")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Near-duplicates, leakage between splits, label issues, outliers and class balance")
            .WithDescription(
                """
                Computed by a background job after every change to the data set, on the images' cached features
                (the first computation fills the cache, so the next training job needs no backbone pass). While a
                newer report is computed the last one stays readable with `stale: true`. `?backbone=` computes it
                with another backbone from now on.
                """
            );
        datasets
            .MapGet("/{id:guid}/suggestions", Suggestions)
            .WithName("SuggestImagesToLabel")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Unlabeled images to label next: the model's least certain, no two alike")
            .WithDescription(
                """
                Ranks the data set's unlabeled images by the model's uncertainty (1 minus the margin between its two
                most probable labels) times diversity (unlike those ranked above; never a near-duplicate of one).
                The model is `modelId`, else the data set's latest frozen-backbone model, else a head trained on the
                spot on the labelled images' cached features. Label one with PATCH …/images/{imageId}.
                """
            );
        datasets
            .MapGet("/{id:guid}/charts/embedding-map.png", EmbeddingMapChart)
            .WithName("GetDatasetEmbeddingMap")
            .Produces<Stream>(StatusCodes.Status200OK, "image/png")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("The data set's images on a plane (PCA of their features), coloured by label")
            .WithDescription("Label issues and outliers of the latest health report are marked.");
        return datasets;
    }

    /// <param name="backbone">Compute health with this backbone from now on (default: the one it uses,
    /// resnet18-imagenet at first).</param>
    internal static async Task<Results<Ok<DatasetHealthResponse>, ProblemHttpResult>> Get(
        Guid id,
        string? backbone,
        TransferDbContext db,
        DatasetHealthScheduler scheduler,
        CancellationToken cancellation
    )
    {
        if (!await db.Datasets.AnyAsync(d => d.Id == id, cancellation))
            return DatasetEndpoints.NotFound(id);
        if (backbone is not null && !await BackboneRegistry.ExistsAsync(db, backbone, cancellation))
            return UnknownBackbone(backbone);
        var row = await db.DatasetHealth.AsNoTracking().FirstOrDefaultAsync(h => h.DatasetId == id, cancellation);
        if (row is null || (backbone is not null && backbone != row.Backbone))
        {
            await scheduler.RequestAsync(id, backbone, cancellation);
            row = await db.DatasetHealth.AsNoTracking().FirstOrDefaultAsync(h => h.DatasetId == id, cancellation);
        }
        var version = await db
            .Datasets.Where(d => d.Id == id)
            .Select(d => (long?)d.Version)
            .FirstOrDefaultAsync(cancellation);
        if (row is null || version is null)
            return DatasetEndpoints.NotFound(id);
        var report = row.Report;
        HealthImageResponse Image(Persistence.Documents.HealthImageDocument i) => new(i.ImageId, i.Label, i.Split);
        NearDuplicateGroupResponse Group(Persistence.Documents.HealthGroupDocument g) =>
            new(g.Images.Select(Image).ToList(), Math.Round(g.Similarity, 4));
        return TypedResults.Ok(
            new DatasetHealthResponse(
                id,
                row.Status,
                row.Status == HealthStatus.Ready ? 1 : row.Progress,
                row.Error,
                report is null || report.DatasetVersion != version || report.Backbone != row.Backbone,
                version.Value,
                report?.DatasetVersion,
                report?.ComputedAt,
                report?.Backbone ?? row.Backbone,
                report?.Seconds,
                report?.Images,
                report?.UnlabeledImages,
                report?.FeaturesComputed,
                report?.DuplicateThreshold,
                report?.NearDuplicates.Select(Group).ToList() ?? [],
                report?.Leakage.Select(Group).ToList() ?? [],
                report
                    ?.LabelIssues.Select(i => new LabelIssueResponse(
                        i.ImageId,
                        i.Label,
                        i.SuggestedLabel,
                        i.Confidence
                    ))
                    .ToList()
                    ?? [],
                report
                    ?.Outliers.Select(o => new OutlierResponse(o.ImageId, o.Label, o.Split, Math.Round(o.Score, 4)))
                    .ToList()
                    ?? [],
                report?.ClassBalance.Select(c => new ClassBalanceResponse(c.Label, c.Images, c.Share)).ToList() ?? [],
                report?.Warnings ?? []
            )
        );
    }

    /// <param name="modelId">The model whose uncertainty ranks the images (default: the data set's latest model with
    /// a frozen backbone; none: a quick head).</param>
    /// <param name="count">How many images, 1 to 100 (default 20).</param>
    internal static async Task<Results<Ok<SuggestionsResponse>, ProblemHttpResult>> Suggestions(
        Guid id,
        Guid? modelId,
        int? count,
        TransferDbContext db,
        BackboneRegistry backbones,
        InferenceThread inference,
        CancellationToken cancellation
    )
    {
        var wanted = count ?? 20;
        if (wanted is < 1 or > MaxSuggestions)
            return Problems.BadRequest(
                "Invalid count",
                $"count: must be between 1 and {MaxSuggestions}; it is {wanted}."
            );
        var health = await db
            .DatasetHealth.Where(h => h.DatasetId == id)
            .Select(h => new { h.Backbone, h.Status })
            .FirstOrDefaultAsync(cancellation);
        if (!await db.Datasets.AnyAsync(d => d.Id == id, cancellation))
            return DatasetEndpoints.NotFound(id);
        TrainedModel? model = null;
        if (modelId is { } chosen)
        {
            model = await db.Models.AsNoTracking().FirstOrDefaultAsync(m => m.Id == chosen, cancellation);
            if (model is null)
                return Problems.NotFound("model", chosen, "modelId");
            if (model.DatasetId != id)
            {
                var labels = await db
                    .DatasetImages.Where(i => i.DatasetId == id && i.Label != null)
                    .Select(i => i.Label!)
                    .Distinct()
                    .ToListAsync(cancellation);
                if (!labels.ToHashSet(StringComparer.Ordinal).SetEquals(model.Labels))
                    return Problems.BadRequest(
                        "Model of other labels",
                        $"modelId: model {chosen} was trained on another data set with labels "
                            + $"[{string.Join(", ", model.Labels)}]; this data set's are "
                            + $"[{string.Join(", ", labels.Order(StringComparer.Ordinal))}]."
                    );
            }
            if (model.FineTunedStages > 0)
                return Problems.Conflict(
                    "Model fine-tuned",
                    $"modelId: model {chosen} fine-tuned {model.FineTunedStages} backbone stage(s), so cached "
                        + "frozen features do not describe what it sees; choose a frozen-backbone model or omit "
                        + "modelId for a quick head."
                );
        }
        else
            model = await db
                .Models.AsNoTracking()
                .Where(m => m.DatasetId == id && m.FineTunedStages == 0)
                .OrderByDescending(m => m.CreatedAt)
                .FirstOrDefaultAsync(cancellation);
        var backboneId = model?.Backbone ?? health?.Backbone ?? DatasetHealthScheduler.DefaultBackbone;
        var rows = await CachedFeaturesAsync(db, id, backboneId, cancellation);
        var unlabeled = rows.Where(r => r.Label is null).ToList();
        var labelled = rows.Where(r => r.Label is not null).ToList();
        var needed = model is null ? rows : unlabeled;
        if (needed.Count(r => r.Features is null) is > 0 and var missing)
            return FeaturesNotReady(missing, backboneId, health?.Status);
        if (unlabeled.Count == 0)
            return TypedResults.Ok(new SuggestionsResponse(model?.Id, backboneId, 0, []));
        var classes = model?.Labels ?? labelled.Select(r => r.Label!).Distinct().Order(StringComparer.Ordinal).ToList();
        if (model is null && classes.Count < 2)
            return Problems.Conflict(
                "Too few labels",
                $"id: suggestions need a model or labelled images of at least 2 classes; data set {id} has "
                    + $"{classes.Count}."
            );
        var backbone = model is null ? null : await backbones.GetAsync(model.Backbone);
        var ranked = await inference.RunAsync(() =>
        {
            using var scope = NewDisposeScope();
            var candidates = Stack(unlabeled);
            IReadOnlyList<float[]> probabilities;
            if (model is not null)
            {
                using var classifier = new ImageClassifier(backbone!, ModelMapping.ToCheckpoint(model));
                probabilities = classifier.ScoreFeatures(candidates).Select(s => s.Probabilities).ToList();
            }
            else
            {
                var index = classes.Select((l, k) => (l, k)).ToDictionary(p => p.l, p => p.k, StringComparer.Ordinal);
                probabilities = LabelSuggestions.QuickProbabilities(
                    Stack(labelled),
                    labelled.Select(r => index[r.Label!]).ToList(),
                    classes.Count,
                    candidates,
                    seed: 42,
                    cancellation
                );
            }
            return LabelSuggestions.Rank(probabilities, candidates, wanted);
        });
        return TypedResults.Ok(
            new SuggestionsResponse(
                model?.Id,
                backboneId,
                unlabeled.Count,
                ranked
                    .Select(s => new SuggestionItem(
                        unlabeled[s.Image].Id,
                        classes[s.Predicted],
                        Math.Round(s.Probability, 4),
                        Math.Round(s.Score, 4)
                    ))
                    .ToList()
            )
        );
    }

    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> EmbeddingMapChart(
        Guid id,
        TransferDbContext db,
        InferenceThread inference,
        CancellationToken cancellation
    )
    {
        var health = await db
            .DatasetHealth.AsNoTracking()
            .Where(h => h.DatasetId == id)
            .Select(h => new
            {
                h.Backbone,
                h.Status,
                h.Report,
            })
            .FirstOrDefaultAsync(cancellation);
        if (!await db.Datasets.AnyAsync(d => d.Id == id, cancellation))
            return DatasetEndpoints.NotFound(id);
        var backboneId = health?.Backbone ?? DatasetHealthScheduler.DefaultBackbone;
        var rows = await CachedFeaturesAsync(db, id, backboneId, cancellation);
        if (rows.Count(r => r.Features is null) is > 0 and var missing)
            return FeaturesNotReady(missing, backboneId, health?.Status);
        var projection = await inference.RunAsync(() =>
        {
            using var scope = NewDisposeScope();
            return EmbeddingMap.Project(Stack(rows));
        });
        var issues = health?.Report?.LabelIssues.Select(i => i.ImageId).ToHashSet() ?? [];
        var outliers = health?.Report?.Outliers.Select(o => o.ImageId).ToHashSet() ?? [];
        var points = rows.Select(
                (r, i) =>
                    new DatasetCharts.MapPoint(
                        projection.Points[i].X,
                        projection.Points[i].Y,
                        r.Label,
                        issues.Contains(r.Id),
                        outliers.Contains(r.Id)
                    )
            )
            .ToList();
        return TypedResults.File(
            DatasetCharts.EmbeddingMap(points, projection.ExplainedVariance, backboneId),
            "image/png"
        );
    }

    private sealed record FeatureRow(Guid Id, string? Label, float[]? Features);

    /// <summary>The data set's images in upload order with this backbone's cached features (null where none is
    /// cached yet).</summary>
    private static async Task<List<FeatureRow>> CachedFeaturesAsync(
        TransferDbContext db,
        Guid id,
        string backboneId,
        CancellationToken cancellation
    ) =>
        await db
            .DatasetImages.AsNoTracking()
            .Where(i => i.DatasetId == id)
            .OrderBy(i => i.Id)
            .Select(i => new FeatureRow(
                i.Id,
                i.Label,
                db.ImageFeatures.Where(f => f.BackboneId == backboneId && f.Sha256 == i.Sha256)
                    .Select(f => f.Values)
                    .FirstOrDefault()
            ))
            .ToListAsync(cancellation);

    private static Tensor Stack(List<FeatureRow> rows)
    {
        var size = rows.Count == 0 ? 0 : rows[0].Features!.Length;
        return tensor(rows.SelectMany(r => r.Features!).ToArray(), [rows.Count, size]);
    }

    private static ProblemHttpResult FeaturesNotReady(int missing, string backbone, HealthStatus? status) =>
        Problems.Conflict(
            "Features not computed yet",
            $"id: {missing} image(s) have no cached '{backbone}' features yet; the data set's health computes them "
                + (
                    status is HealthStatus.Pending or HealthStatus.Running
                        ? $"(it is {status} now). Retry when GET …/health says Ready."
                        : $"(GET …/health?backbone={backbone} starts it)."
                )
        );

    private static ProblemHttpResult UnknownBackbone(string backbone) =>
        Problems.BadRequest(
            "Unknown backbone",
            $"backbone: no backbone is '{backbone}'; GET /api/backbones lists them."
        );
}
