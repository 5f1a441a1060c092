using System.Globalization;
using System.Text;
using System.Text.Json;
using Hangfire;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using TransferApi.Http;
using TransferApi.Jobs;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training;

namespace TransferApi.Features.Models;

/// <param name="DatasetId">The data set whose images are scored.</param>
/// <param name="Split">Which images: all (default), train, validation, test or unlabeled.</param>
/// <param name="TopK">Labels per image in the results (default 5).</param>
public sealed record CreateBatchPredictionRequest(Guid? DatasetId, string? Split, int? TopK);

/// <param name="Id">The batch prediction's id.</param>
/// <param name="ModelId">The model that scores.</param>
/// <param name="DatasetId">The data set scored; null when a zip was uploaded.</param>
/// <param name="ArchiveName">The uploaded zip's file name; null when a data set is scored.</param>
/// <param name="Split">Which images of the data set: all, train, validation, test or unlabeled (all for a zip).</param>
/// <param name="TopK">Labels per image in the results.</param>
/// <param name="Status">Queued, Running, Succeeded, Failed or Cancelled.</param>
/// <param name="ImagesTotal">Images to score (known once it runs).</param>
/// <param name="ImagesDone">Images scored so far.</param>
/// <param name="ImagesFromCache">Images scored from cached frozen features, without a backbone pass.</param>
/// <param name="Error">Why it failed.</param>
/// <param name="Rejected">Files of the uploaded zip that are not images, so not scored, and why.</param>
/// <param name="CreatedAt">When it was asked for (UTC).</param>
/// <param name="StartedAt">When a worker started it (UTC).</param>
/// <param name="FinishedAt">When it ended (UTC).</param>
/// <param name="Results">Where the results are, one line per image (jsonl or ?format=csv), once it succeeded.</param>
public sealed record BatchPredictionResponse(
    Guid Id,
    Guid ModelId,
    Guid? DatasetId,
    string? ArchiveName,
    string Split,
    int TopK,
    JobStatus Status,
    int ImagesTotal,
    int ImagesDone,
    int ImagesFromCache,
    string? Error,
    IReadOnlyList<RejectedFile> Rejected,
    DateTime CreatedAt,
    DateTime? StartedAt,
    DateTime? FinishedAt,
    string Results
);

public static class BatchPredictionEndpoints
{
    private static readonly string[] Splits = ["all", "train", "validation", "test", "unlabeled"];
    private static readonly string[] DatasetOnlyFields = ["datasetId", "split"];

    public static void MapBatchPredictionEndpoints(this RouteGroupBuilder models)
    {
        models
            .MapPost("/{id}/batch-predictions", Create)
            .WithName("CreateBatchPrediction")
            .AcceptsIdempotencyKey()
            .RequireRateLimiting(RateLimits.Upload)
            .DisableAntiforgery()
            // One Accepts: routing answers 415 for any other content type (the OpenAPI document gets the form).
            .Accepts<CreateBatchPredictionRequest>("application/json", "multipart/form-data")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .WithSummary("Score every image of a data set (or one split), or of an uploaded zip, in a worker")
            .WithDescription(
                "JSON `{datasetId, split?, topK?}` scores a data set; a multipart form with a zip `file` (and "
                    + "`topK`) scores its images, each named in the results by its path in the zip (files that are "
                    + "not images are listed in `rejected`; the images are kept only until the batch ends). 202 "
                    + "with the batch; follow it at its Location, then read …/results (jsonl, or ?format=csv). A "
                    + "frozen-backbone model scores from the cached features of images any job, health report or "
                    + "batch embedded before; a fine-tuned model runs its whole network. "
                    + "`batch-prediction.completed` webhooks fire when it ends."
            );
        models
            .MapGet("/{id}/batch-predictions", List)
            .WithName("ListBatchPredictions")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("This model's batch predictions, newest first");
        models
            .MapGet("/{id}/batch-predictions/{batchId:guid}", Get)
            .WithName("GetBatchPrediction")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("A batch prediction's status and progress");
        models
            .MapPost("/{id}/batch-predictions/{batchId:guid}/cancel", Cancel)
            .WithName("CancelBatchPrediction")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Cancel a queued or running batch prediction");
        models
            .MapGet("/{id}/batch-predictions/{batchId:guid}/results", Results)
            .WithName("GetBatchPredictionResults")
            .Produces<string>(StatusCodes.Status200OK, "application/jsonl", "text/csv")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("One line per image: imageId, fileName, label, split, predictions, novelty, unknown")
            .WithDescription(
                "jsonl (default): one JSON object per line. csv: imageId, fileName, label, split, predicted, "
                    + "probability, novelty, unknown, predictions (label:probability;… most probable first). Until "
                    + "the batch succeeded: 409 (a cancelled batch has no results)."
            );
    }

    internal static async Task<Results<Accepted<BatchPredictionResponse>, ValidationProblem, ProblemHttpResult>> Create(
        string id,
        HttpRequest request,
        TransferDbContext db,
        BatchPredictionUpload upload,
        IBackgroundJobClient jobs,
        CancellationToken cancellation
    )
    {
        var (modelId, problem) = await ModelEndpoints.ResolveAsync(id, db, cancellation);
        if (problem is not null)
            return problem;
        var labels = await db.Models.Where(m => m.Id == modelId).Select(m => m.Labels.Count).FirstAsync(cancellation);
        var batch = new BatchPrediction
        {
            Id = Guid.CreateVersion7(),
            ModelId = modelId,
            Status = JobStatus.Queued,
            CreatedAt = DateTime.UtcNow,
        };
        if (request.HasFormContentType)
        {
            var form = await request.ReadFormAsync(cancellation);
            var errors = new Dictionary<string, string[]>();
            var file = form.Files.GetFile("file");
            if (file is null)
                errors["file"] = ["file is required: the zip of images to score, as a part named 'file'."];
            foreach (var field in DatasetOnlyFields.Where(form.ContainsKey))
                errors[field] = [$"{field} applies to scoring a data set (a JSON body), not to an uploaded zip."];
            var topK = 5;
            if (form.TryGetValue("topK", out var text) && !int.TryParse(text, out topK))
                errors["topK"] = [$"topK must be a whole number, not '{text}'."];
            else if (TopKProblem(topK) is { } topKProblem)
                errors["topK"] = [topKProblem];
            if (errors.Count > 0)
                return TypedResults.ValidationProblem(errors);
            batch.TopK = Math.Min(topK, labels);
            batch = await upload.CreateAsync(db, batch, file!, cancellation);
        }
        else
        {
            CreateBatchPredictionRequest? body;
            try
            {
                body = await request.ReadFromJsonAsync<CreateBatchPredictionRequest>(cancellation);
            }
            catch (JsonException e)
            {
                return Problems.BadRequest("Invalid JSON", $"body: not a valid request ({e.Message})");
            }
            var errors = new Dictionary<string, string[]>();
            if (body?.DatasetId is not { } datasetId)
                errors["datasetId"] = ["datasetId is required (or send a zip of images as a multipart 'file')."];
            else if (!await db.Datasets.AnyAsync(d => d.Id == datasetId, cancellation))
                errors["datasetId"] = [$"No data set has id {datasetId}."];
            var split = (body?.Split ?? "all").Trim().ToLowerInvariant();
            if (!Splits.Contains(split))
                errors["split"] = [$"split must be one of {string.Join(", ", Splits)}, not '{body?.Split}'."];
            var topK = body?.TopK ?? 5;
            if (TopKProblem(topK) is { } topKProblem)
                errors["topK"] = [topKProblem];
            if (errors.Count > 0)
                return TypedResults.ValidationProblem(errors);
            batch.DatasetId = body!.DatasetId;
            batch.Split = split == "all" ? null : Enum.Parse<DataSplit>(split, ignoreCase: true);
            batch.TopK = Math.Min(topK, labels);
            db.BatchPredictions.Add(batch);
            await db.SaveChangesAsync(cancellation);
        }
        batch.HangfireJobId = jobs.Enqueue<BatchPredictionRunner>(r => r.RunAsync(batch.Id, CancellationToken.None));
        await db
            .BatchPredictions.Where(b => b.Id == batch.Id)
            .ExecuteUpdateAsync(s => s.SetProperty(b => b.HangfireJobId, batch.HangfireJobId), CancellationToken.None);
        return TypedResults.Accepted(Location(batch), ToResponse(batch));
    }

    private static string? TopKProblem(int topK) => topK < 1 ? "topK must be at least 1." : null;

    /// <param name="id">A model id, name, name@version or name@alias.</param>
    /// <param name="page">The page, from 1.</param>
    /// <param name="pageSize">Batches per page (default 20, at most 200).</param>
    internal static async Task<Results<Ok<Page<BatchPredictionResponse>>, ProblemHttpResult>> List(
        string id,
        TransferDbContext db,
        CancellationToken cancellation,
        int? page = null,
        int? pageSize = null
    )
    {
        var (modelId, problem) = await ModelEndpoints.ResolveAsync(id, db, cancellation);
        if (problem is not null)
            return problem;
        var rows = await db
            .BatchPredictions.AsNoTracking()
            .Where(b => b.ModelId == modelId)
            .OrderByDescending(b => b.CreatedAt)
            .ToPageAsync(page, pageSize, cancellation);
        return TypedResults.Ok(rows.Select(ToResponse));
    }

    internal static async Task<Results<Ok<BatchPredictionResponse>, ProblemHttpResult>> Get(
        string id,
        Guid batchId,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var (batch, problem) = await FindAsync(id, batchId, db, cancellation);
        return batch is null ? problem! : TypedResults.Ok(ToResponse(batch));
    }

    internal static async Task<Results<Accepted<BatchPredictionResponse>, ProblemHttpResult>> Cancel(
        string id,
        Guid batchId,
        TransferDbContext db,
        IBackgroundJobClient jobs,
        WebhookPublisher webhooks,
        CancellationToken cancellation
    )
    {
        var (batch, problem) = await FindAsync(id, batchId, db, cancellation);
        if (batch is null)
            return problem!;
        // A queued batch ends here, its event committed with its end; a running one stops within a second of its
        // worker seeing the request. Conditional updates: a cancel racing the worker's start is neither lost nor
        // overwrites an ended batch.
        var wasQueued = await BatchPredictionRunner.EndAsync(
            db,
            webhooks,
            batchId,
            JobStatus.Cancelled,
            null,
            onlyIfQueued: true,
            cancellation
        );
        var wasRunning =
            !wasQueued
            && await db
                .BatchPredictions.Where(b => b.Id == batchId && b.Status == JobStatus.Running)
                .ExecuteUpdateAsync(s => s.SetProperty(b => b.CancelRequested, true), cancellation) > 0;
        if (!wasQueued && !wasRunning)
            return Problems.Conflict(
                "Batch prediction already ended",
                $"batchId: batch prediction {batchId} is {batch.Status}; only queued or running ones can be cancelled."
            );
        if (wasQueued && batch.HangfireJobId is not null)
            jobs.Delete(batch.HangfireJobId);
        var current = await db.BatchPredictions.AsNoTracking().FirstAsync(b => b.Id == batchId, cancellation);
        return TypedResults.Accepted(Location(current), ToResponse(current));
    }

    /// <param name="id">A model id, name, name@version or name@alias.</param>
    /// <param name="batchId">The batch prediction.</param>
    /// <param name="format">jsonl (default) or csv.</param>
    internal static async Task<IResult> Results(
        string id,
        Guid batchId,
        TransferDbContext db,
        CancellationToken cancellation,
        string format = "jsonl"
    )
    {
        if (format is not ("jsonl" or "csv"))
            return Problems.BadRequest("Invalid format", $"format: '{format}' is neither jsonl nor csv.");
        var (batch, problem) = await FindAsync(id, batchId, db, cancellation);
        if (batch is null)
            return problem!;
        if (batch.Status != JobStatus.Succeeded)
            return Problems.Conflict(
                "No results",
                $"batchId: batch prediction {batchId} is {batch.Status}; results exist once it has succeeded."
            );
        var rows = db
            .BatchPredictionResults.AsNoTracking()
            .Where(r => r.BatchId == batchId)
            .OrderBy(r => r.Position)
            .AsAsyncEnumerable();
        return format == "csv"
            ? TypedResults.Stream(s => WriteCsvAsync(rows, s, cancellation), "text/csv", $"batch-{batchId}.csv")
            : TypedResults.Stream(s => WriteJsonLinesAsync(rows, s, cancellation), "application/jsonl");
    }

    private static readonly JsonSerializerOptions LineJson = new(JsonSerializerDefaults.Web);
    private static readonly ReadOnlyMemory<byte> NewLine = "\n"u8.ToArray();

    private static async Task WriteJsonLinesAsync(
        IAsyncEnumerable<BatchPredictionResult> rows,
        Stream body,
        CancellationToken cancellation
    )
    {
        await foreach (var row in rows.WithCancellation(cancellation))
        {
            await JsonSerializer.SerializeAsync(
                body,
                new
                {
                    imageId = row.ImageId,
                    fileName = row.FileName,
                    label = row.Label,
                    split = row.Split?.ToString(),
                    predictions = row.Predictions.Select(p => new PredictionResponse(p.Label, p.Probability)),
                    novelty = row.Novelty,
                    unknown = row.Unknown,
                },
                LineJson,
                cancellation
            );
            await body.WriteAsync(NewLine, cancellation);
        }
    }

    private static async Task WriteCsvAsync(
        IAsyncEnumerable<BatchPredictionResult> rows,
        Stream body,
        CancellationToken cancellation
    )
    {
        await using var writer = new StreamWriter(body, new UTF8Encoding(false), leaveOpen: true);
        await writer.WriteLineAsync("imageId,fileName,label,split,predicted,probability,novelty,unknown,predictions");
        await foreach (var row in rows.WithCancellation(cancellation))
        {
            var top = row.Predictions.FirstOrDefault();
            string[] fields =
            [
                row.ImageId?.ToString() ?? "",
                row.FileName,
                row.Label ?? "",
                row.Split?.ToString() ?? "",
                top?.Label ?? "",
                top?.Probability.ToString("R", CultureInfo.InvariantCulture) ?? "",
                row.Novelty?.ToString("R", CultureInfo.InvariantCulture) ?? "",
                row.Unknown?.ToString().ToLowerInvariant() ?? "",
                string.Join(
                    ';',
                    row.Predictions.Select(p =>
                        $"{p.Label}:{p.Probability.ToString("R", CultureInfo.InvariantCulture)}"
                    )
                ),
            ];
            await writer.WriteLineAsync(string.Join(',', fields.Select(Csv)));
        }
    }

    /// <summary>
    /// RFC 4180 quoting. A file name or label a client chose that starts like a formula (=, +, -, @) gets a leading
    /// apostrophe, so a spreadsheet opening the file shows it as text instead of running it (OWASP's CSV injection
    /// advice).
    /// </summary>
    private static string Csv(string field)
    {
        if (
            field.Length > 0
            && "=+-@\t\r".Contains(field[0])
            && !double.TryParse(field, CultureInfo.InvariantCulture, out _)
        )
            field = "'" + field;
        return field.IndexOfAny([',', '"', '\n', '\r']) >= 0
            ? $"\"{field.Replace("\"", "\"\"", StringComparison.Ordinal)}\""
            : field;
    }

    private static async Task<(BatchPrediction? Batch, ProblemHttpResult? Problem)> FindAsync(
        string id,
        Guid batchId,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var (modelId, problem) = await ModelEndpoints.ResolveAsync(id, db, cancellation);
        if (problem is not null)
            return (null, problem);
        var batch = await db
            .BatchPredictions.AsNoTracking()
            .FirstOrDefaultAsync(b => b.Id == batchId && b.ModelId == modelId, cancellation);
        return batch is null ? (null, Problems.NotFound("batch prediction", batchId, "batchId")) : (batch, null);
    }

    private static string Location(BatchPrediction batch) =>
        $"/api/models/{batch.ModelId}/batch-predictions/{batch.Id}";

    private static BatchPredictionResponse ToResponse(BatchPrediction batch) =>
        new(
            batch.Id,
            batch.ModelId,
            batch.DatasetId,
            batch.ArchiveName,
            batch.Split?.ToString().ToLowerInvariant() ?? "all",
            batch.TopK,
            batch.Status,
            batch.ImagesTotal,
            batch.ImagesDone,
            batch.ImagesFromCache,
            batch.Error,
            batch.Rejected.Select(r => new RejectedFile(r.Entry, r.Reason)).ToList(),
            batch.CreatedAt,
            batch.StartedAt,
            batch.FinishedAt,
            $"{Location(batch)}/results"
        );
}
