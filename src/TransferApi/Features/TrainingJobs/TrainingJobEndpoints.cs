using System.Globalization;
using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using Hangfire;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Http;
using TransferApi.Jobs;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training;
using TransferApi.Training.Backbones;
using TransferApi.Training.Evaluation;

namespace TransferApi.Features.TrainingJobs;

public static class TrainingJobEndpoints
{
    public static RouteGroupBuilder MapTrainingJobEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/training-jobs").WithTags("Training jobs").RequireAuthorization(Caller.Train);
        group
            .MapPost("/", Create)
            .WithName("CreateTrainingJob")
            .AcceptsIdempotencyKey()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .WithSummary("Start training a model on a data set")
            .WithDescription(Descriptions.Create);
        group.MapGet("/", List).WithName("ListTrainingJobs").WithSummary("List training jobs, newest first");
        group
            .MapPost("/{id:guid}/cancel", Cancel)
            .WithName("CancelTrainingJob")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Cancel a queued or running job")
            .WithDescription(Descriptions.Cancel);
        group
            .MapGet("/{id:guid}/events", Events)
            .WithName("StreamTrainingJobEvents")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Live progress as Server-Sent Events")
            .WithDescription(Descriptions.Events);
        group
            .MapGet("/{id:guid}/report", Report)
            .WithName("GetTrainingJobReport")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Evaluation of the job's model on the test split (or validation when there is none)")
            .WithDescription(Descriptions.Report);
        group
            .MapGet("/{id:guid}/report/images", ReportImages)
            .WithName("ListTrainingJobReportImages")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("The report's images with their outcome, worst loss first (filter by outcome and labels)")
            .WithDescription(
                "Each image's true and predicted label, calibrated probability, loss and novelty, with links to it "
                    + "and its thumbnail. The confusion matrix's cells link here with label and predicted."
            );
        group
            .MapGet("/{id:guid}/charts/learning-curves.png", LearningCurvesChart)
            .WithName("GetLearningCurvesChart")
            .Produces<Stream>(StatusCodes.Status200OK, "image/png")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Learning curves: train and validation loss, validation accuracy, the kept epoch (PNG)");
        group
            .MapGet("/{id:guid}/charts/tuning.png", TuningChart)
            .WithName("GetTuningChart")
            .Produces<Stream>(StatusCodes.Status200OK, "image/png")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("The recipe search: each candidate's cross-validated score and spread, the chosen one (PNG)");
        group
            .MapGet("/{id:guid}/charts/confusion-matrix.png", ConfusionMatrixChart)
            .WithName("GetConfusionMatrixChart")
            .Produces<Stream>(StatusCodes.Status200OK, "image/png")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Confusion matrix of the report (PNG)");
        group
            .MapGet("/{id:guid}/charts/reliability.png", ReliabilityChart)
            .WithName("GetReliabilityChart")
            .Produces<Stream>(StatusCodes.Status200OK, "image/png")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Reliability diagram: accuracy against calibrated confidence on the report's images (PNG)");
        group
            .MapGet("/{id:guid}/charts/precision-recall.png", PrecisionRecallChart)
            .WithName("GetPrecisionRecallChart")
            .Produces<Stream>(StatusCodes.Status200OK, "image/png")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Each class's precision against recall over thresholds, the recommended one marked (PNG)");
        group
            .MapGet("/{id:guid}/charts/top-losses.png", TopLossesChart)
            .WithName("GetTopLossesChart")
            .Produces<Stream>(StatusCodes.Status200OK, "image/png")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Contact sheet of the report's worst images: thumbnail, true and predicted label (PNG)");
        group
            .MapGet("/{id:guid}", Get)
            .WithName("GetTrainingJob")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Read a training job: status, progress, per-epoch metrics, model id");
        return group;
    }

    internal static async Task<Results<Accepted<TrainingJobResponse>, ValidationProblem, ProblemHttpResult>> Create(
        CreateTrainingJobRequest request,
        TransferDbContext db,
        JobDispatcher dispatcher,
        TenantQuotas quotas,
        IOptions<DatasetOptions> datasets,
        IOptions<QuotaOptions> limits,
        HttpContext http,
        CancellationToken cancellation
    )
    {
        var options = request.ToOptions();
        // A default budget above the operator's maximum is the maximum; one the client asked for is checked below.
        if (options.Tuning is { FitToFeaturePass: true } implicitBudget)
            options = options with
            {
                Tuning = implicitBudget with
                {
                    BudgetSeconds = Math.Min(implicitBudget.BudgetSeconds, limits.Value.MaxTuningBudgetSeconds),
                },
            };
        var job = new TrainingJob
        {
            Id = Guid.CreateVersion7(),
            DatasetId = request.DatasetId ?? Guid.Empty,
            Status = JobStatus.Queued,
            CreatedAt = DateTime.UtcNow,
            Backbone = request.Backbone ?? BackboneCatalog.ResNet18ImageNet,
            Options = options,
            Progress = TrainingProgress.Queued(options.Epochs),
            ModelName = request.ModelName,
        };

        // The checks and the insert in one transaction holding the data set and the backbone: a concurrent delete
        // of either waits for it and then finds the job (409), or wins and this request finds nothing (400), as in
        // sequence.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellation);
        await RowLocks.AdvisoryAsync(db, RowLocks.Backbone(job.Backbone), shared: true, cancellation);
        var datasetProblems =
            request.DatasetId is not null && await RowLocks.KeepDatasetAsync(db, job.DatasetId, cancellation)
                ? await DatasetTrainability.ProblemsAsync(
                    db,
                    job.DatasetId,
                    datasets.Value.MinImagesPerClass,
                    cancellation
                )
                : null;
        var errors = await ValidateAsync(
            request,
            job,
            datasetFound: datasetProblems is not null,
            limits.Value.MaxTuningBudgetSeconds,
            db,
            cancellation
        );
        if (errors.Count > 0)
            return TypedResults.ValidationProblem(errors);
        if (datasetProblems is { Count: > 0 })
            return TypedResults.Problem(
                $"datasetId: data set {job.DatasetId} cannot be trained yet: {string.Join(" ", datasetProblems)}",
                statusCode: StatusCodes.Status422UnprocessableEntity,
                title: "Data set not trainable"
            );
        if (await quotas.QueuedJobsOverLimitAsync(db, cancellation) is { } full)
        {
            http.Response.Headers.RetryAfter = full.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
            return TypedResults.Problem(
                $"This tenant already has {full.Queued} job(s) queued, the most it may have waiting "
                    + $"(Quotas:MaxQueuedJobsPerTenant); retry after about {full.RetryAfterSeconds} s (Retry-After), "
                    + "when "
                    + "one of them has started.",
                statusCode: StatusCodes.Status429TooManyRequests,
                title: "Too many queued jobs"
            );
        }

        db.TrainingJobs.Add(job);
        await db.SaveChangesAsync(cancellation);
        await transaction.CommitAsync(cancellation);
        // Hangfire gets the job when a worker is free and it is this tenant's turn (at once on an idle service).
        await dispatcher.DispatchAsync(cancellation);
        return TypedResults.Accepted($"/api/training-jobs/{job.Id}", job.ToResponse());
    }

    /// <summary>Every field of the request that is wrong, by field name (empty when none is).</summary>
    private static async Task<Dictionary<string, string[]>> ValidateAsync(
        CreateTrainingJobRequest request,
        TrainingJob job,
        bool datasetFound,
        double maxTuningBudget,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var errors = new Dictionary<string, string[]>();
        if (request.DatasetId is null)
            errors["datasetId"] = ["datasetId is required."];
        else if (!datasetFound)
            errors["datasetId"] = [$"No data set has id {job.DatasetId}."];
        var stages = await BackboneStagesAsync(db, job.Backbone, cancellation);
        if (stages is null)
            errors["backbone"] =
            [
                $"No backbone is '{job.Backbone}'; GET /api/backbones lists them "
                    + $"(default {BackboneCatalog.ResNet18ImageNet}).",
            ];
        foreach (var group in job.Options.Problems().GroupBy(p => p.Field))
            errors[group.Key] = group.Select(p => p.Message).ToArray();
        if (stages is not null && job.Options.UnfreezeStages > stages && !errors.ContainsKey("unfreezeStages"))
            errors["unfreezeStages"] =
            [
                $"unfreezeStages must be between 0 and {stages}: backbone '{job.Backbone}' " + $"has {stages} stages.",
            ];
        if (job.Options.Tuning?.BudgetSeconds > maxTuningBudget && !errors.ContainsKey("tuning.budgetSeconds"))
            errors["tuning.budgetSeconds"] =
            [
                $"tuning.budgetSeconds must be at most {maxTuningBudget:0.#} (Quotas:MaxTuningBudgetSeconds).",
            ];
        if (request.ModelName is not null && ModelNames.Problem(request.ModelName, "modelName") is { } badName)
            errors["modelName"] = [$"{badName}."];
        return errors;
    }

    /// <summary>Stages the backbone can fine-tune, or null when there is no such backbone.</summary>
    private static async Task<int?> BackboneStagesAsync(
        TransferDbContext db,
        string backbone,
        CancellationToken cancellation
    )
    {
        if (BackboneCatalog.BuiltIn.Contains(backbone))
            return BackboneArchitecture.CntkResNet18.Stages;
        var architecture = await db
            .Backbones.Where(b => b.Id == backbone)
            .Select(b => b.Architecture)
            .FirstOrDefaultAsync(cancellation);
        return architecture is null ? null : BackboneArchitecture.Find(architecture)?.Stages;
    }

    internal static async Task<Results<Accepted<TrainingJobResponse>, ProblemHttpResult>> Cancel(
        Guid id,
        TransferDbContext db,
        IBackgroundJobClient jobs,
        JobDispatcher dispatcher,
        WebhookPublisher webhooks,
        CancellationToken cancellation
    )
    {
        // Conditional updates, so a cancel racing the worker's start can neither be lost nor overwrite an ended job.
        // A queued job ends here, and its event is committed with its end (a running one ends in its worker).
        IReadOnlyList<WebhookDelivery> events = [];
        var finishedAt = DateTime.UtcNow;
        bool wasQueued;
        await using (var transaction = await db.Database.BeginTransactionAsync(cancellation))
        {
            wasQueued =
                await db
                    .TrainingJobs.Where(j => j.Id == id && j.Status == JobStatus.Queued)
                    .ExecuteUpdateAsync(
                        s =>
                            s.SetProperty(j => j.Status, JobStatus.Cancelled)
                                .SetProperty(j => j.CancelRequested, true)
                                .SetProperty(j => j.FinishedAt, finishedAt),
                        cancellation
                    ) > 0;
            if (wasQueued)
            {
                var ended = await db
                    .TrainingJobs.Where(j => j.Id == id)
                    .Select(j => new { j.Tenant, j.DatasetId })
                    .FirstAsync(cancellation);
                events = await webhooks.AddAsync(
                    db,
                    ended.Tenant,
                    WebhookEvents.TrainingJobEnded(id, ended.DatasetId, JobStatus.Cancelled, null, null, finishedAt),
                    cancellation
                );
                await db.SaveChangesAsync(cancellation);
            }
            await transaction.CommitAsync(cancellation);
        }
        webhooks.Send(events);
        var wasRunning =
            !wasQueued
            && await db
                .TrainingJobs.Where(j => j.Id == id && j.Status == JobStatus.Running)
                .ExecuteUpdateAsync(s => s.SetProperty(j => j.CancelRequested, true), cancellation) > 0;
        var job = await db
            .TrainingJobs.AsNoTracking()
            .Include(j => j.Metrics)
            .FirstOrDefaultAsync(j => j.Id == id, cancellation);
        if (job is null)
            return Problems.NotFound("training job", id);
        if (wasQueued)
        {
            if (job.HangfireJobId is not null)
                jobs.Delete(job.HangfireJobId);
            // A slot it held is free for the next job in turn.
            await dispatcher.DispatchAsync(cancellation);
        }
        if (!wasQueued && !wasRunning)
            return Problems.Conflict(
                "Job already ended",
                $"id: training job {id} is {job.Status}; only queued or running jobs can be cancelled."
            );
        return TypedResults.Accepted($"/api/training-jobs/{id}", job.ToResponse());
    }

    internal static async Task<Results<ServerSentEventsResult<object>, ProblemHttpResult>> Events(
        Guid id,
        TransferDbContext db,
        IDbContextFactory<TransferDbContext> dbFactory,
        CancellationToken cancellation
    )
    {
        if (!await db.TrainingJobs.AnyAsync(j => j.Id == id, cancellation))
            return Problems.NotFound("training job", id);
        return TypedResults.ServerSentEvents(JobEvents(id, dbFactory, cancellation));
    }

    /// <summary>Polls the job's row (whichever process runs it) and emits what changed since the last look.</summary>
    private static async IAsyncEnumerable<SseItem<object>> JobEvents(
        Guid id,
        IDbContextFactory<TransferDbContext> dbFactory,
        [EnumeratorCancellation] CancellationToken cancellation
    )
    {
        ProgressResponse? lastProgress = null;
        var lastEpoch = 0;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
        do
        {
            await using var db = await dbFactory.CreateDbContextAsync(cancellation);
            var job = await db.TrainingJobs.AsNoTracking().FirstOrDefaultAsync(j => j.Id == id, cancellation);
            if (job is null)
                yield break;
            var metrics = await db
                .TrainingMetrics.AsNoTracking()
                .Where(m => m.JobId == id && m.Epoch > lastEpoch)
                .OrderBy(m => m.Epoch)
                .ToListAsync(cancellation);
            var progress = job.Progress.ToResponse();
            if (progress != lastProgress)
            {
                lastProgress = progress;
                yield return new SseItem<object>(progress, "progress");
            }
            foreach (var m in metrics)
            {
                lastEpoch = m.Epoch;
                yield return new SseItem<object>(m.ToResponse(), "metrics");
            }
            if (job.Status is JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled)
            {
                yield return new SseItem<object>(job.ToEndedEvent(), "status");
                yield break;
            }
        } while (await timer.WaitForNextTickAsync(cancellation));
    }

    internal static async Task<Results<Ok<ClassificationReportResponse>, ProblemHttpResult>> Report(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var (found, problem) = await FindReportAsync(
            id,
            db,
            "a report exists once the job has a model and held-out (test or validation) images",
            cancellation
        );
        if (problem is not null)
            return problem;
        return TypedResults.Ok(found!.Report.ToResponse(id, found.Thresholds, found.Calibration));
    }

    /// <param name="outcome">misclassified, correct or all (default).</param>
    /// <param name="label">Only images of this true class.</param>
    /// <param name="predicted">Only images predicted as this class.</param>
    /// <param name="page">From 1.</param>
    /// <param name="pageSize">1-200 (default 20).</param>
    internal static async Task<Results<Ok<Page<EvaluatedImageResponse>>, ProblemHttpResult>> ReportImages(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation,
        string? outcome = null,
        string? label = null,
        string? predicted = null,
        int page = 1,
        int pageSize = 20
    )
    {
        if (outcome is not (null or "all" or "misclassified" or "correct"))
            return Problems.BadRequest(
                "Invalid outcome",
                $"outcome: '{outcome}' is not misclassified, correct or all."
            );
        if (page < 1)
            return Problems.BadRequest("Invalid page", "page: must be at least 1.");
        if (pageSize is < 1 or > Paging.MaxPageSize)
            return Problems.BadRequest("Invalid pageSize", $"pageSize: must be between 1 and {Paging.MaxPageSize}.");
        var (found, problem) = await FindReportAsync(
            id,
            db,
            "its images are listed once the job has a report",
            cancellation
        );
        if (problem is not null)
            return problem;
        var labels = found!.Report.ConfusionMatrix.Labels;
        foreach (var (name, value) in new[] { ("label", label), ("predicted", predicted) })
            if (value is not null && !labels.Contains(value, StringComparer.Ordinal))
                return Problems.BadRequest(
                    $"Invalid {name}",
                    $"{name}: the model has no class '{value}'; its classes are {string.Join(", ", labels)}."
                );
        var query = db.EvaluatedImages.AsNoTracking().Where(e => e.JobId == id);
        if (outcome == "misclassified")
            query = query.Where(e => e.Label != e.Predicted);
        else if (outcome == "correct")
            query = query.Where(e => e.Label == e.Predicted);
        if (label is not null)
            query = query.Where(e => e.Label == label);
        if (predicted is not null)
            query = query.Where(e => e.Predicted == predicted);
        var total = await query.CountAsync(cancellation);
        var pages = Math.Max(1, (total + pageSize - 1) / pageSize);
        if (page > pages)
            return Problems.BadRequest(
                "Invalid page",
                $"page: {page} is past the last page ({pages}) of {total} images."
            );
        var rows = await query
            .OrderByDescending(e => e.Loss)
            .ThenBy(e => e.ImageId)
            .Skip((page - 1) * pageSize)
            .Take(pageSize)
            .ToListAsync(cancellation);
        return TypedResults.Ok(
            new Page<EvaluatedImageResponse>(
                rows.Select(r => r.ToResponse(found.DatasetId)).ToList(),
                page,
                pageSize,
                total
            )
        );
    }

    private sealed record FoundReport(
        ClassificationReport Report,
        ThresholdReport? Thresholds,
        Calibration? Calibration,
        Guid DatasetId
    );

    /// <summary>The job's report, or the problem: 404 for no such job, 409 (saying <paramref name="when"/>) while
    /// it has none.</summary>
    private static async Task<(FoundReport? Found, ProblemHttpResult? Problem)> FindReportAsync(
        Guid id,
        TransferDbContext db,
        string when,
        CancellationToken cancellation
    )
    {
        var job = await db
            .TrainingJobs.AsNoTracking()
            .Where(j => j.Id == id)
            .Select(j => new
            {
                j.Status,
                j.Report,
                j.Thresholds,
                Calibration = db.Models.Where(m => m.Id == j.ModelId).Select(m => m.Calibration).FirstOrDefault(),
                j.DatasetId,
            })
            .FirstOrDefaultAsync(cancellation);
        if (job is null)
            return (null, Problems.NotFound("training job", id));
        return job.Report is null
            ? (null, Problems.Conflict("No report", $"id: training job {id} is {job.Status}; {when}."))
            : (new FoundReport(job.Report, job.Thresholds, job.Calibration, job.DatasetId), null);
    }

    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> LearningCurvesChart(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var job = await db
            .TrainingJobs.AsNoTracking()
            .Include(j => j.Metrics)
            .FirstOrDefaultAsync(j => j.Id == id, cancellation);
        if (job is null)
            return Problems.NotFound("training job", id);
        if (job.Metrics.Count == 0)
            return Problems.Conflict(
                "No epochs yet",
                $"id: training job {id} is {job.Status} and has finished no epoch yet."
            );
        var bestEpoch = job.ModelId is { } modelId
            ? await db
                .Models.Where(m => m.Id == modelId)
                .Select(m => (int?)m.BestEpoch)
                .FirstOrDefaultAsync(cancellation)
            : null;
        return TypedResults.File(
            TrainingCharts.LearningCurves(job.Metrics.OrderBy(m => m.Epoch).ToList(), bestEpoch),
            "image/png"
        );
    }

    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> TuningChart(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var job = await db
            .TrainingJobs.AsNoTracking()
            .Where(j => j.Id == id)
            .Select(j => new
            {
                j.Status,
                j.Tuning,
                j.Options,
            })
            .FirstOrDefaultAsync(cancellation);
        if (job is null)
            return Problems.NotFound("training job", id);
        if (job.Tuning is not { Candidates.Count: > 0 } search)
            return Problems.Conflict(
                "No recipe search",
                job.Options.Tuning is not null
                    ? $"id: training job {id} is {job.Status} and has not scored a candidate recipe yet."
                    : $"id: training job {id} trained the recipe it was given (tuning off): there is no search to show."
            );
        return TypedResults.File(TrainingCharts.Tuning(search), "image/png");
    }

    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> ConfusionMatrixChart(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var (report, problem) = await FindReportAsync(
            id,
            db,
            "the confusion matrix exists once the job has a report",
            cancellation
        );
        if (problem is not null)
            return problem;
        return TypedResults.File(TrainingCharts.ConfusionMatrix(report!.Report), "image/png");
    }

    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> ReliabilityChart(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var (found, problem) = await FindReportAsync(
            id,
            db,
            "the reliability diagram exists once the job has a report",
            cancellation
        );
        if (problem is not null)
            return problem;
        var images = await db.EvaluatedImages.AsNoTracking().Where(e => e.JobId == id).ToListAsync(cancellation);
        return TypedResults.File(
            TrainingCharts.Reliability(images, found!.Calibration, found.Report.Split),
            "image/png"
        );
    }

    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> PrecisionRecallChart(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var (found, problem) = await FindReportAsync(
            id,
            db,
            "the precision-recall chart exists once the job has a report",
            cancellation
        );
        if (problem is not null)
            return problem;
        if (found!.Thresholds is not { } thresholds)
            return Problems.Conflict(
                "No thresholds",
                $"id: training job {id} was trained before thresholds were computed; retrain to get them."
            );
        return TypedResults.File(TrainingCharts.PrecisionRecall(thresholds), "image/png");
    }

    /// <param name="count">Images on the sheet, 1-64 (default 16), worst loss first.</param>
    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> TopLossesChart(
        Guid id,
        TransferDbContext db,
        IOptions<UploadOptions> limits,
        CancellationToken cancellation,
        int count = 16
    )
    {
        if (count is < 1 or > 64)
            return Problems.BadRequest("Invalid count", "count: must be between 1 and 64.");
        var (found, problem) = await FindReportAsync(
            id,
            db,
            "the top losses exist once the job has a report",
            cancellation
        );
        if (problem is not null)
            return problem;
        var worst = await db
            .EvaluatedImages.AsNoTracking()
            .Where(e => e.JobId == id)
            .OrderByDescending(e => e.Loss)
            .ThenBy(e => e.ImageId)
            .Take(count)
            .ToListAsync(cancellation);
        var ids = worst.Select(e => e.ImageId).ToList();
        var bytes = await db
            .DatasetImages.AsNoTracking()
            .Where(i => ids.Contains(i.Id))
            .Select(i => new { i.Id, Data = i.WorkingCopy ?? i.Data })
            .ToDictionaryAsync(i => i.Id, i => i.Data, cancellation);
        var sheet = worst
            .Select(e => new TrainingCharts.SheetImage(Thumbnails.Jpeg(bytes[e.ImageId], limits.Value.ImageLimits), e))
            .ToList();
        return TypedResults.File(TrainingCharts.TopLosses(sheet, found!.Report.Split), "image/png");
    }

    internal static async Task<Ok<Page<TrainingJobResponse>>> List(
        TransferDbContext db,
        int? page,
        int? pageSize,
        CancellationToken cancellation
    )
    {
        var jobs = await db
            .TrainingJobs.AsNoTracking()
            .Include(j => j.Metrics)
            .OrderByDescending(j => j.CreatedAt)
            .ToPageAsync(page, pageSize, cancellation);
        return TypedResults.Ok(jobs.Select(j => j.ToResponse()));
    }

    internal static async Task<Results<Ok<TrainingJobResponse>, ProblemHttpResult>> Get(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var job = await db
            .TrainingJobs.AsNoTracking()
            .Include(j => j.Metrics)
            .FirstOrDefaultAsync(j => j.Id == id, cancellation);
        return job is null ? Problems.NotFound("training job", id) : TypedResults.Ok(job.ToResponse());
    }

    private static class Descriptions
    {
        public const string Create = """
            Queues a job that runs the backbone once over every image (features are cached across jobs) and trains
            the chosen head on them: linear or MLP, with optional augmentation, early stopping and, with
            unfreezeStages, fine-tuning of the backbone's last stages. Poll GET /api/training-jobs/{id} or stream
            /events for progress and per-epoch metrics. Workers take queued jobs round-robin across tenants; a tenant
            with Quotas:MaxQueuedJobsPerTenant jobs waiting gets 429 with Retry-After.
            """;

        public const string Cancel = """
            A queued job ends Cancelled at once. A running job stops within one batch and ends Cancelled; if an
            epoch had completed, the best epoch so far becomes its model (modelId).
            """;

        public const string Events = """
            text/event-stream: `progress` events (the progress object) when it changes, a `metrics` event per
            finished epoch, then one `status` event when the job ends, and the stream closes.
            """;

        public const string Report = """
            Accuracy, top-5 accuracy, macro F1, log loss, per-class precision/recall/F1/support and the confusion
            matrix; available once the job has a model.
            """;
    }
}
