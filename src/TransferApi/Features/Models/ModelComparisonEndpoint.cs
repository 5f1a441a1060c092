using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using TransferApi.Http;
using TransferApi.Persistence;
using TransferApi.Training.Evaluation;

namespace TransferApi.Features.Models;

/// <param name="ModelId">The model.</param>
/// <param name="Name">Its name, if it has one.</param>
/// <param name="Version">Its version under that name.</param>
/// <param name="Accuracy">Share of the shared images it classifies correctly.</param>
/// <param name="MacroF1">Mean F1 over the shared images' classes.</param>
/// <param name="LogLoss">Mean -log of its (calibrated) probability of the true label.</param>
/// <param name="ExpectedCalibrationError">Gap between its confidence and its accuracy, over 15 confidence
/// bins.</param>
/// <param name="PerClass">F1 and support of each class.</param>
public sealed record ComparedModelResponse(
    Guid ModelId,
    string? Name,
    int? Version,
    double Accuracy,
    double MacroF1,
    double LogLoss,
    double ExpectedCalibrationError,
    IReadOnlyList<ClassF1Response> PerClass
);

/// <param name="Label">The class.</param>
/// <param name="F1">Harmonic mean of its precision and recall.</param>
/// <param name="Support">Shared images of the class.</param>
public sealed record ClassF1Response(string Label, double F1, int Support);

/// <param name="First">One model.</param>
/// <param name="Second">The other.</param>
/// <param name="OnlyFirstRight">Images only the first classifies correctly.</param>
/// <param name="OnlySecondRight">Images only the second classifies correctly.</param>
/// <param name="PValue">McNemar's exact two-sided p-value of "equally accurate".</param>
/// <param name="Significant">Whether the p-value is under 0.05.</param>
/// <param name="MoreAccurate">The more accurate model when the difference is significant.</param>
public sealed record ModelPairResponse(
    Guid First,
    Guid Second,
    int OnlyFirstRight,
    int OnlySecondRight,
    double PValue,
    bool Significant,
    Guid? MoreAccurate
);

/// <param name="ModelId">The model.</param>
/// <param name="Predicted">Its label for the image.</param>
/// <param name="Probability">Its probability of that label.</param>
public sealed record ModelPredictionResponse(Guid ModelId, string Predicted, double Probability);

/// <param name="ImageId">The image (GET /api/datasets/{datasetId}/images/{imageId}).</param>
/// <param name="Label">Its true label.</param>
/// <param name="Predictions">Each model's answer, in the order asked.</param>
public sealed record DisagreementResponse(
    Guid ImageId,
    string Label,
    IReadOnlyList<ModelPredictionResponse> Predictions
);

/// <summary>Models side by side on the evaluation images they share.</summary>
/// <param name="SharedImages">Images every model was evaluated on (with the same true label).</param>
/// <param name="Models">Each model's scores on them, in the order asked.</param>
/// <param name="Pairs">McNemar's exact test for every pair.</param>
/// <param name="DisagreementCount">Shared images on which the models' predictions differ.</param>
/// <param name="Disagreements">The first 200 of them.</param>
public sealed record ModelComparisonResponse(
    int SharedImages,
    IReadOnlyList<ComparedModelResponse> Models,
    IReadOnlyList<ModelPairResponse> Pairs,
    int DisagreementCount,
    IReadOnlyList<DisagreementResponse> Disagreements
);

/// <summary>GET /api/models/compare: whether to move an alias, from the images the models were evaluated on.</summary>
public static class ModelComparisonEndpoint
{
    public const int MaxModels = 10;
    private const int MaxDisagreements = 200;

    /// <param name="ids">Two to ten models, comma-separated: ids, names, name@version or name@alias.</param>
    internal static async Task<Results<Ok<ModelComparisonResponse>, ProblemHttpResult>> Compare(
        string? ids,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var references = (ids ?? "")
            .Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .ToList();
        if (references.Count is < 2 or > MaxModels)
            return Problems.BadRequest(
                "Invalid ids",
                $"ids: give 2 to {MaxModels} models separated by commas (ids, names, name@version or name@alias); "
                    + $"got {references.Count}."
            );
        var models = new List<TrainedModel>();
        foreach (var reference in references)
        {
            var (modelId, problem) = await ModelEndpoints.ResolveAsync(reference, db, cancellation);
            if (problem is not null)
                return problem;
            if (models.All(m => m.Id != modelId))
                models.Add(await db.Models.AsNoTracking().FirstAsync(m => m.Id == modelId, cancellation));
        }
        if (models.Count < 2)
            return Problems.BadRequest("Invalid ids", "ids: they name one model; give 2 or more different ones.");
        var jobs = models.Select(m => m.JobId).ToList();
        var rows = await db.EvaluatedImages.AsNoTracking().Where(e => jobs.Contains(e.JobId)).ToListAsync(cancellation);
        var byJob = rows.ToLookup(e => e.JobId);
        var evaluated = models.Select(m => byJob[m.JobId].ToDictionary(e => e.ImageId)).ToList();
        // Images every model was evaluated on, with the same true label (an image relabelled between the jobs is not
        // comparable).
        var shared = evaluated
            .Skip(1)
            .Aggregate(evaluated[0].Keys.AsEnumerable(), (ids, images) => ids.Where(images.ContainsKey))
            .Where(id => evaluated.Select(images => images[id].Label).Distinct(StringComparer.Ordinal).Count() == 1)
            .Order()
            .ToList();
        if (shared.Count == 0)
            return TypedResults.Problem(
                $"ids: models {string.Join(", ", models.Select(m => m.Id))} share no evaluated images (each model's "
                    + "report scores its own data set's validation or test images); compare models evaluated on the "
                    + "same data set.",
                statusCode: StatusCodes.Status422UnprocessableEntity,
                title: "Nothing to compare on"
            );
        var scored = evaluated.Select(images => shared.Select(id => images[id]).ToList()).ToList();
        var result = ModelComparison.Compare(
            scored
                .Select(s =>
                    (IReadOnlyList<ScoredImage>)
                        s.Select(e => new ScoredImage(e.Label, e.Predicted, e.Probability, e.Loss)).ToList()
                )
                .ToList()
        );
        return TypedResults.Ok(
            new ModelComparisonResponse(
                scored[0].Count,
                models
                    .Select(
                        (m, k) =>
                        {
                            var s = result.Models[k];
                            return new ComparedModelResponse(
                                m.Id,
                                m.Name,
                                m.Version,
                                Math.Round(s.Accuracy, 4),
                                Math.Round(s.MacroF1, 4),
                                Math.Round(s.LogLoss, 4),
                                Math.Round(s.ExpectedCalibrationError, 4),
                                s.PerClass.Select(c => new ClassF1Response(c.Label, Math.Round(c.F1, 4), c.Support))
                                    .ToList()
                            );
                        }
                    )
                    .ToList(),
                result
                    .Pairs.Select(p => new ModelPairResponse(
                        models[p.First].Id,
                        models[p.Second].Id,
                        p.Test.OnlyFirstRight,
                        p.Test.OnlySecondRight,
                        p.Test.PValue,
                        p.Test.PValue < ModelComparison.Significance,
                        p.MoreAccurate is { } better ? models[better].Id : null
                    ))
                    .ToList(),
                result.Disagreements.Count,
                result
                    .Disagreements.Take(MaxDisagreements)
                    .Select(k => new DisagreementResponse(
                        scored[0][k].ImageId,
                        scored[0][k].Label,
                        scored
                            .Select(
                                (s, m) => new ModelPredictionResponse(models[m].Id, s[k].Predicted, s[k].Probability)
                            )
                            .ToList()
                    ))
                    .ToList()
            )
        );
    }
}
