using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using Hangfire;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Http;
using TransferApi.Features.Datasets;
using TransferApi.Services;
using TransferApi.Jobs;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Training.Backbones;
using TransferApi.Training.Imaging;
using TransferApi.Training;
using TransferApi.Training.Evaluation;

namespace TransferApi.Features.TrainingJobs;

/// <summary>Options of a training job; everything but <see cref="DatasetId"/> has a default.</summary>
/// <param name="DatasetId">The data set to train on.</param>
/// <param name="Backbone">Pretrained backbone id (default resnet18-imagenet).</param>
/// <param name="Epochs">Passes of the head over the training features, 1-1000 (default 10).</param>
/// <param name="BatchSize">Images per head optimisation step, 1-4096 (default 32).</param>
/// <param name="LearningRate">Learning rate of the head, (0, 10] (default 0.001).</param>
/// <param name="ValidationFraction">Share of each class held out for validation when the data set has no validation images, [0, 0.9] (default 0.2).</param>
/// <param name="Seed">Seed of the split, the shuffling and the head's initialisation (default 42).</param>
/// <param name="Head">Linear (softmax regression, the default) or Mlp (one hidden layer with ReLU and dropout).</param>
/// <param name="HiddenUnits">Mlp hidden units, 1-8192 (default 256).</param>
/// <param name="Dropout">Mlp dropout, [0, 1) (default 0.2).</param>
/// <param name="Optimizer">Adam (default), AdamW or Sgd.</param>
/// <param name="WeightDecay">L2 penalty (Adam, Sgd) or decoupled weight decay (AdamW), [0, 1] (default 0).</param>
/// <param name="Momentum">Sgd momentum, [0, 1) (default 0.9).</param>
/// <param name="LrSchedule">Constant (default), Step, Cosine or OneCycle.</param>
/// <param name="StepEpochs">Step schedule: epochs between decays (default a third of the epochs).</param>
/// <param name="StepGamma">Step schedule: factor applied at each decay, (0, 1] (default 0.1).</param>
/// <param name="LabelSmoothing">[0, 1) (default 0).</param>
/// <param name="ClassWeighted">Weight the loss of each class by total / (classes x its count), for imbalanced data (default false).</param>
/// <param name="EarlyStopping">Stop when the monitored metric stops improving and keep the best epoch (default off).</param>
/// <param name="UnfreezeStages">0 (default) keeps the backbone frozen; 1-4 fine-tunes its last N residual stages after the head has converged.</param>
/// <param name="FineTuneEpochs">Epochs of fine-tuning, 1-1000 (default 5).</param>
/// <param name="FineTuneLrFactor">Unfrozen stages learn at learningRate divided by this, 1-10000 (default 10).</param>
/// <param name="Augmentation">Augmented views of each training image (default off).</param>
/// <param name="ModelName">Name the model gets when the job succeeds, as that name's next version (predict with name, name@version or name@alias).</param>
public sealed record CreateTrainingJobRequest(
    Guid? DatasetId, string? Backbone = null, int? Epochs = null, int? BatchSize = null,
    double? LearningRate = null, double? ValidationFraction = null, long? Seed = null,
    HeadKind? Head = null, int? HiddenUnits = null, double? Dropout = null,
    OptimizerKind? Optimizer = null, double? WeightDecay = null, double? Momentum = null,
    LrSchedule? LrSchedule = null, int? StepEpochs = null, double? StepGamma = null,
    double? LabelSmoothing = null, bool? ClassWeighted = null, EarlyStoppingRequest? EarlyStopping = null,
    int? UnfreezeStages = null, int? FineTuneEpochs = null, double? FineTuneLrFactor = null, AugmentationRequest? Augmentation = null,
    string? ModelName = null)
{
    /// <summary>The request over the training core's defaults: one source of defaults and of validation.</summary>
    public TrainingOptions ToOptions()
    {
        var defaults = new TrainingOptions();
        return defaults with
        {
            Epochs = Epochs ?? defaults.Epochs,
            BatchSize = BatchSize ?? defaults.BatchSize,
            LearningRate = LearningRate ?? defaults.LearningRate,
            ValidationFraction = ValidationFraction ?? defaults.ValidationFraction,
            Seed = Seed ?? defaults.Seed,
            Head = new HeadSpec(Head ?? defaults.Head.Kind, HiddenUnits ?? defaults.Head.HiddenUnits, Dropout ?? defaults.Head.Dropout),
            Optimizer = Optimizer ?? defaults.Optimizer,
            WeightDecay = WeightDecay ?? defaults.WeightDecay,
            Momentum = Momentum ?? defaults.Momentum,
            Schedule = LrSchedule ?? defaults.Schedule,
            StepEpochs = StepEpochs ?? defaults.StepEpochs,
            StepGamma = StepGamma ?? defaults.StepGamma,
            LabelSmoothing = LabelSmoothing ?? defaults.LabelSmoothing,
            ClassWeighted = ClassWeighted ?? defaults.ClassWeighted,
            EarlyStopping = EarlyStopping is null ? null : new EarlyStopping(
                EarlyStopping.Monitor ?? MonitoredMetric.ValLoss, EarlyStopping.Patience ?? 5, EarlyStopping.MinDelta ?? 0),
            UnfreezeStages = UnfreezeStages ?? defaults.UnfreezeStages,
            FineTuneEpochs = FineTuneEpochs ?? defaults.FineTuneEpochs,
            FineTuneLrFactor = FineTuneLrFactor ?? defaults.FineTuneLrFactor,
            Augmentation = Augmentation is null ? defaults.Augmentation : new AugmentationOptions(
                Augmentation.Views ?? 2, Augmentation.RandomResizedCrop ?? true, Augmentation.HorizontalFlip ?? true, Augmentation.ColorJitter ?? 0.2),
        };
    }
}

/// <param name="Views">Augmented views of each training image, embedded once per job, 0-16 (default 2 when augmentation is given).</param>
/// <param name="RandomResizedCrop">Crop 50-100 % of the image at an aspect ratio of 3/4 to 4/3 (default true).</param>
/// <param name="HorizontalFlip">Mirror half of the views (default true).</param>
/// <param name="ColorJitter">Brightness, contrast and saturation varied by up to this factor, 0-1 (default 0.2).</param>
public sealed record AugmentationRequest(int? Views = null, bool? RandomResizedCrop = null, bool? HorizontalFlip = null, double? ColorJitter = null);

/// <param name="Monitor">ValLoss (default) or ValAccuracy.</param>
/// <param name="Patience">Epochs without improvement before stopping, 1-1000 (default 5).</param>
/// <param name="MinDelta">Smallest change that counts as an improvement (default 0).</param>
public sealed record EarlyStoppingRequest(MonitoredMetric? Monitor = null, int? Patience = null, double? MinDelta = null);

public sealed record ProgressResponse(string Stage, int Epoch, int TotalEpochs, int Batch, int TotalBatches, double Percent, double? ImagesPerSecond, double? EtaSeconds);

public sealed record MetricResponse(int Epoch, double TrainLoss, double? ValLoss, double? ValAccuracy, double LearningRate);

/// <summary>Where a fine-tuning job keeps the activations it trains on (Worker:ActivationMemoryBytes decides).</summary>
/// <param name="Storage">Memory when they fit the budget; Spilled (a temporary file) or Recomputed (from the images, every epoch) beyond it.</param>
/// <param name="Bytes">The activations of all the job's images and augmented views.</param>
/// <param name="BudgetBytes">The worker's memory budget for them.</param>
public sealed record ActivationsResponse(string Storage, long Bytes, long BudgetBytes);

/// <param name="CheckpointEpoch">While running: the last epoch saved for crash recovery (a lost worker's job resumes after it).</param>
/// <param name="ResumedFromEpoch">Set when a worker took the job over from a checkpoint: the epoch it continued after.</param>
/// <param name="ResumedFromBatch">Set when that checkpoint was taken part way through the next epoch (a worker shutting down): the batches of it already done.</param>
/// <param name="ModelName">The name its model gets on success.</param>
public sealed record TrainingJobResponse(
    Guid Id, Guid DatasetId, JobStatus Status, DateTime CreatedAt, DateTime? StartedAt, DateTime? FinishedAt,
    ProgressResponse Progress, IReadOnlyList<MetricResponse> Metrics, Guid? ModelId, string? Error, string Backbone, TrainingOptions Options,
    int? CheckpointEpoch, int? ResumedFromEpoch, string? ModelName, int? ResumedFromBatch, ActivationsResponse? Activations);

public static class TrainingJobEndpoints
{
    public static RouteGroupBuilder MapTrainingJobEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/training-jobs").WithTags("Training jobs").RequireAuthorization(Caller.Train);
        group.MapPost("/", Create).ProducesProblem(StatusCodes.Status422UnprocessableEntity).ProducesProblem(StatusCodes.Status429TooManyRequests)
            .WithSummary("Start training a model on a data set")
            .WithDescription("Queues a job that runs the frozen backbone once over every image and trains a linear softmax head on the features. Poll GET /api/training-jobs/{id} for progress and per-epoch metrics. "
                + "Workers take queued jobs round-robin across tenants; a tenant with Quotas:MaxQueuedJobsPerTenant jobs waiting gets 429 with Retry-After.");
        group.MapGet("/", List).WithSummary("List training jobs, newest first");
        group.MapPost("/{id:guid}/cancel", Cancel).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Cancel a queued or running job")
            .WithDescription("A queued job ends Cancelled at once. A running job stops within one batch and ends Cancelled; if an epoch had completed, the best epoch so far becomes its model (modelId).");
        group.MapGet("/{id:guid}/events", Events).ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Live progress as Server-Sent Events")
            .WithDescription("text/event-stream: `progress` events (the progress object) when it changes, a `metrics` event per finished epoch, then one `status` event when the job ends, and the stream closes.");
        group.MapGet("/{id:guid}/report", Report).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Evaluation of the job's model on the test split (or validation when there is none)")
            .WithDescription("Accuracy, top-5 accuracy, macro F1, log loss, per-class precision/recall/F1/support and the confusion matrix; available once the job has a model.");
        group.MapGet("/{id:guid}/charts/learning-curves.png", LearningCurvesChart)
            .Produces<byte[]>(StatusCodes.Status200OK, "image/png").ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Learning curves: train and validation loss, validation accuracy, the kept epoch (PNG)");
        group.MapGet("/{id:guid}/charts/confusion-matrix.png", ConfusionMatrixChart)
            .Produces<byte[]>(StatusCodes.Status200OK, "image/png").ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Confusion matrix of the report (PNG)");
        group.MapGet("/{id:guid}", Get).ProducesProblem(StatusCodes.Status404NotFound).WithSummary("Read a training job: status, progress, per-epoch metrics, model id");
        return group;
    }

    internal static async Task<Results<Accepted<TrainingJobResponse>, ValidationProblem, ProblemHttpResult>> Create(
        CreateTrainingJobRequest request, TransferDbContext db, JobDispatcher dispatcher, TenantQuotas quotas, IOptions<DatasetOptions> datasets,
        HttpContext http, CancellationToken cancellation)
    {
        var options = request.ToOptions();
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

        // The checks and the insert in one transaction holding the data set and the backbone: a concurrent delete of
        // either waits for it and then finds the job (409), or wins and this request finds nothing (400), as in sequence.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellation);
        await RowLocks.AdvisoryAsync(db, RowLocks.Backbone(job.Backbone), shared: true, cancellation);
        var errors = new Dictionary<string, string[]>();
        if (request.DatasetId is null) errors["datasetId"] = ["datasetId is required."];
        var dataset = request.DatasetId is not null && await RowLocks.KeepDatasetAsync(db, job.DatasetId, cancellation)
            ? await DatasetSummaries.GetAsync(db, job.DatasetId, datasets.Value.MinImagesPerClass, cancellation)
            : null;
        if (request.DatasetId is not null && dataset is null) errors["datasetId"] = [$"No data set has id {job.DatasetId}."];
        var stages = BackboneCatalog.BuiltIn.Contains(job.Backbone) ? BackboneArchitecture.CntkResNet18.Stages
            : await db.Backbones.Where(b => b.Id == job.Backbone).Select(b => b.Architecture).FirstOrDefaultAsync(cancellation) is { } architecture
                ? BackboneArchitecture.Find(architecture)?.Stages : null;
        if (stages is null) errors["backbone"] = [$"No backbone is '{job.Backbone}'; GET /api/backbones lists them (default {BackboneCatalog.ResNet18ImageNet})."];
        foreach (var group in job.Options.Problems().GroupBy(p => p.Field)) errors[group.Key] = group.Select(p => p.Message).ToArray();
        if (stages is not null && options.UnfreezeStages > stages && !errors.ContainsKey("unfreezeStages"))
            errors["unfreezeStages"] = [$"unfreezeStages must be between 0 and {stages}: backbone '{job.Backbone}' has {stages} stages."];
        if (request.ModelName is not null && ModelNames.Problem(request.ModelName, "modelName") is { } badName) errors["modelName"] = [$"{badName}."];
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (dataset is { Trainable: false })
            return TypedResults.Problem($"datasetId: data set {job.DatasetId} cannot be trained yet: {string.Join(" ", dataset.Problems)}",
                statusCode: StatusCodes.Status422UnprocessableEntity, title: "Data set not trainable");
        if (await quotas.QueuedJobsOverLimitAsync(db, cancellation) is { } full)
        {
            http.Response.Headers.RetryAfter = full.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return TypedResults.Problem(
                $"This tenant already has {full.Queued} job(s) queued, the most it may have waiting (Quotas:MaxQueuedJobsPerTenant); "
                + $"retry after about {full.RetryAfterSeconds} s (Retry-After), when one of them has started.",
                statusCode: StatusCodes.Status429TooManyRequests, title: "Too many queued jobs");
        }

        db.TrainingJobs.Add(job);
        await db.SaveChangesAsync(cancellation);
        await transaction.CommitAsync(cancellation);
        // Hangfire gets the job when a worker is free and it is this tenant's turn (at once on an idle service).
        await dispatcher.DispatchAsync(cancellation);
        return TypedResults.Accepted($"/api/training-jobs/{job.Id}", ToResponse(job));
    }

    internal static async Task<Results<Accepted<TrainingJobResponse>, ProblemHttpResult>> Cancel(
        Guid id, TransferDbContext db, IBackgroundJobClient jobs, JobDispatcher dispatcher, CancellationToken cancellation)
    {
        // Conditional updates, so a cancel racing the worker's start can neither be lost nor overwrite an ended job.
        var wasQueued = await db.TrainingJobs.Where(j => j.Id == id && j.Status == JobStatus.Queued)
            .ExecuteUpdateAsync(s => s.SetProperty(j => j.Status, JobStatus.Cancelled).SetProperty(j => j.CancelRequested, true)
                .SetProperty(j => j.FinishedAt, DateTime.UtcNow), cancellation) > 0;
        var wasRunning = !wasQueued && await db.TrainingJobs.Where(j => j.Id == id && j.Status == JobStatus.Running)
            .ExecuteUpdateAsync(s => s.SetProperty(j => j.CancelRequested, true), cancellation) > 0;
        var job = await db.TrainingJobs.AsNoTracking().Include(j => j.Metrics).FirstOrDefaultAsync(j => j.Id == id, cancellation);
        if (job is null) return Problems.NotFound("training job", id);
        if (wasQueued)
        {
            if (job.HangfireJobId is not null) jobs.Delete(job.HangfireJobId);
            // A slot it held is free for the next job in turn.
            await dispatcher.DispatchAsync(cancellation);
        }
        if (!wasQueued && !wasRunning)
            return Problems.Conflict("Job already ended", $"id: training job {id} is {job.Status}; only queued or running jobs can be cancelled.");
        return TypedResults.Accepted($"/api/training-jobs/{id}", ToResponse(job));
    }

    internal static async Task<Results<ServerSentEventsResult<object>, ProblemHttpResult>> Events(
        Guid id, TransferDbContext db, IDbContextFactory<TransferDbContext> dbFactory, CancellationToken cancellation)
    {
        if (!await db.TrainingJobs.AnyAsync(j => j.Id == id, cancellation)) return Problems.NotFound("training job", id);
        return TypedResults.ServerSentEvents(JobEvents(id, dbFactory, cancellation));
    }

    /// <summary>Polls the job's row (whichever process runs it) and emits what changed since the last look.</summary>
    private static async IAsyncEnumerable<SseItem<object>> JobEvents(Guid id, IDbContextFactory<TransferDbContext> dbFactory, [EnumeratorCancellation] CancellationToken cancellation)
    {
        ProgressResponse? lastProgress = null;
        var lastEpoch = 0;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
        do
        {
            await using var db = await dbFactory.CreateDbContextAsync(cancellation);
            var job = await db.TrainingJobs.AsNoTracking().FirstOrDefaultAsync(j => j.Id == id, cancellation);
            if (job is null) yield break;
            var metrics = await db.TrainingMetrics.AsNoTracking().Where(m => m.JobId == id && m.Epoch > lastEpoch).OrderBy(m => m.Epoch).ToListAsync(cancellation);
            var progress = ToProgress(job.Progress);
            if (progress != lastProgress)
            {
                lastProgress = progress;
                yield return new SseItem<object>(progress, "progress");
            }
            foreach (var m in metrics)
            {
                lastEpoch = m.Epoch;
                yield return new SseItem<object>(ToMetric(m), "metrics");
            }
            if (job.Status is JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled)
            {
                yield return new SseItem<object>(new { job.Id, job.Status, job.ModelId, job.Error, job.FinishedAt }, "status");
                yield break;
            }
        }
        while (await timer.WaitForNextTickAsync(cancellation));
    }

    internal static async Task<Results<Ok<ClassificationReport>, ProblemHttpResult>> Report(Guid id, TransferDbContext db, CancellationToken cancellation)
    {
        var job = await db.TrainingJobs.AsNoTracking().Where(j => j.Id == id).Select(j => new { j.Status, j.Report }).FirstOrDefaultAsync(cancellation);
        if (job is null) return Problems.NotFound("training job", id);
        return job.Report is null
            ? Problems.Conflict("No report", $"id: training job {id} is {job.Status}; a report exists once the job has a model and held-out (test or validation) images.")
            : TypedResults.Ok(job.Report);
    }

    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> LearningCurvesChart(Guid id, TransferDbContext db, CancellationToken cancellation)
    {
        var job = await db.TrainingJobs.AsNoTracking().Include(j => j.Metrics).FirstOrDefaultAsync(j => j.Id == id, cancellation);
        if (job is null) return Problems.NotFound("training job", id);
        if (job.Metrics.Count == 0)
            return Problems.Conflict("No epochs yet", $"id: training job {id} is {job.Status} and has finished no epoch yet.");
        var bestEpoch = job.ModelId is { } modelId ? await db.Models.Where(m => m.Id == modelId).Select(m => (int?)m.BestEpoch).FirstOrDefaultAsync(cancellation) : null;
        return TypedResults.File(TrainingCharts.LearningCurves(job.Metrics.OrderBy(m => m.Epoch).ToList(), bestEpoch), "image/png");
    }

    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> ConfusionMatrixChart(Guid id, TransferDbContext db, CancellationToken cancellation)
    {
        var job = await db.TrainingJobs.AsNoTracking().Where(j => j.Id == id).Select(j => new { j.Status, j.Report }).FirstOrDefaultAsync(cancellation);
        if (job is null) return Problems.NotFound("training job", id);
        return job.Report is null
            ? Problems.Conflict("No report", $"id: training job {id} is {job.Status}; the confusion matrix exists once the job has a report.")
            : TypedResults.File(TrainingCharts.ConfusionMatrix(job.Report), "image/png");
    }

    internal static async Task<Ok<Page<TrainingJobResponse>>> List(TransferDbContext db, int? page, int? pageSize, CancellationToken cancellation)
    {
        var jobs = await db.TrainingJobs.AsNoTracking().Include(j => j.Metrics).OrderByDescending(j => j.CreatedAt)
            .ToPageAsync(page, pageSize, cancellation);
        return TypedResults.Ok(new Page<TrainingJobResponse>(jobs.Items.Select(ToResponse).ToList(), jobs.PageNumber, jobs.PageSize, jobs.TotalCount));
    }

    internal static async Task<Results<Ok<TrainingJobResponse>, ProblemHttpResult>> Get(Guid id, TransferDbContext db, CancellationToken cancellation)
    {
        var job = await db.TrainingJobs.AsNoTracking().Include(j => j.Metrics).FirstOrDefaultAsync(j => j.Id == id, cancellation);
        return job is null
            ? Problems.NotFound("training job", id)
            : TypedResults.Ok(ToResponse(job));
    }

    private static TrainingJobResponse ToResponse(TrainingJob job) => new(
        job.Id, job.DatasetId, job.Status, job.CreatedAt, job.StartedAt, job.FinishedAt,
        ToProgress(job.Progress),
        job.Metrics.OrderBy(m => m.Epoch).Select(ToMetric).ToList(),
        job.ModelId, job.Error, job.Backbone, job.Options, job.CheckpointEpoch, job.ResumedFromEpoch, job.ModelName, job.ResumedFromBatch,
        job.ActivationStorage is { } storage ? new ActivationsResponse(storage.ToString(), job.ActivationBytes ?? 0, job.ActivationBudgetBytes ?? 0) : null);

    private static ProgressResponse ToProgress(TrainingProgress p) => new(
        p.Stage.ToString(), p.Epoch, p.TotalEpochs, p.Batch, p.TotalBatches, Math.Round(p.Percent, 2),
        p.ImagesPerSecond is { } rate ? Math.Round(rate, 2) : null, p.EtaSeconds is { } eta ? Math.Round(eta, 1) : null);

    private static MetricResponse ToMetric(TrainingMetric m) => new(m.Epoch, m.TrainLoss, m.ValLoss, m.ValAccuracy, m.LearningRate);
}
