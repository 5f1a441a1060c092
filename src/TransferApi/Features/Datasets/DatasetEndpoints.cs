using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Http;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training;

namespace TransferApi.Features.Datasets;

public static class DatasetEndpoints
{
    public static RouteGroupBuilder MapDatasetEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/datasets").WithTags("Datasets").RequireAuthorization(Caller.Train);
        group
            .MapPost("/", Upload)
            .WithName("UploadDataset")
            .AcceptsIdempotencyKey()
            .RequireRateLimiting(RateLimits.Upload)
            .DisableAntiforgery()
            .Accepts<IFormFile>("multipart/form-data")
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .WithSummary("Upload a zip of folder-per-class images")
            .WithDescription(UploadDescription);
        group.MapGet("/", List).WithName("ListDatasets").WithSummary("List data sets, newest first");
        group
            .MapGet("/{id:guid}", Get)
            .WithName("GetDataset")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Read a data set: classes, per-split counts, imbalance, image sizes, trainability");
        group
            .MapPost("/{id:guid}/split", Resplit)
            .WithName("ResplitDataset")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary(
                "Split again (per class, seeded) the images whose split was not fixed by folders or by the client"
            )
            .WithDescription(
                "By default each near-duplicate group of the latest health report goes to one split "
                    + "(keepNearDuplicatesTogether), so no copy of a training image is validated or tested on."
            );
        group
            .MapDelete("/{id:guid}", Delete)
            .WithName("DeleteDataset")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Delete a data set that no training job uses");
        group.MapDatasetImageEndpoints();
        group.MapDatasetHealthEndpoints();
        return group;
    }

    /// <param name="name">A display name for the data set.</param>
    /// <param name="file">The zip archive.</param>
    /// <param name="validationFraction">Share of each class held out for validation where the archive fixes no split
    /// (default 0.2).</param>
    /// <param name="testFraction">Share of each class held out for the final test where the archive fixes no split
    /// (default 0).</param>
    /// <param name="seed">Seed of that split (default 42).</param>
    internal static async Task<Results<Created<DatasetResponse>, ValidationProblem, ProblemHttpResult>> Upload(
        [FromForm] string name,
        IFormFile file,
        [FromForm] double? validationFraction,
        [FromForm] double? testFraction,
        [FromForm] long? seed,
        TransferDbContext db,
        DatasetIngestion ingestion,
        IOptions<UploadOptions> limits,
        IOptions<DatasetOptions> options,
        CancellationToken cancellation
    )
    {
        name = name.Trim();
        var fractions = new SplitFractions(
            validationFraction ?? options.Value.DefaultValidationFraction,
            testFraction ?? options.Value.DefaultTestFraction
        );
        var errors = new Dictionary<string, string[]>();
        if (name.Length is 0 or > 200)
            errors["name"] = ["name must be 1 to 200 characters."];
        if (fractions.Problem is { } problem)
            errors[problem.Field] = [problem.Message];
        if (errors.Count > 0)
            return TypedResults.ValidationProblem(errors);

        await using var stream = file.OpenReadStream();
        using var archive = DatasetArchive.Open(stream, limits.Value);
        var report = await ingestion.CreateAsync(
            name,
            archive,
            fractions,
            seed ?? options.Value.DefaultSplitSeed,
            cancellation
        );
        var dataset = await DatasetSummaries.GetAsync(
            db,
            report.DatasetId,
            options.Value.MinImagesPerClass,
            cancellation
        );
        return TypedResults.Created($"/api/datasets/{report.DatasetId}", dataset);
    }

    internal static async Task<Ok<Page<DatasetResponse>>> List(
        TransferDbContext db,
        IOptions<DatasetOptions> options,
        int? page,
        int? pageSize,
        CancellationToken cancellation
    )
    {
        var (p, size) = Paging.Normalize(page, pageSize);
        var ordered = db.Datasets.OrderByDescending(d => d.CreatedAt);
        var items = await DatasetSummaries.ListAsync(
            db,
            ordered.Skip((p - 1) * size).Take(size),
            options.Value.MinImagesPerClass,
            cancellation
        );
        return TypedResults.Ok(
            new Page<DatasetResponse>(
                items.OrderByDescending(d => d.CreatedAt).ToList(),
                p,
                size,
                await db.Datasets.CountAsync(cancellation)
            )
        );
    }

    internal static async Task<Results<Ok<DatasetResponse>, ProblemHttpResult>> Get(
        Guid id,
        TransferDbContext db,
        IOptions<DatasetOptions> options,
        CancellationToken cancellation
    )
    {
        var dataset = await DatasetSummaries.GetAsync(db, id, options.Value.MinImagesPerClass, cancellation);
        return dataset is null ? NotFound(id) : TypedResults.Ok(dataset);
    }

    internal static async Task<Results<Ok<DatasetResponse>, ValidationProblem, ProblemHttpResult>> Resplit(
        Guid id,
        ResplitRequest request,
        TransferDbContext db,
        DatasetIngestion ingestion,
        IOptions<DatasetOptions> options,
        CancellationToken cancellation
    )
    {
        var current = await db.Datasets.AsNoTracking().FirstOrDefaultAsync(d => d.Id == id, cancellation);
        if (current is null)
            return NotFound(id);
        var fractions = new SplitFractions(
            request.ValidationFraction ?? current.ValidationFraction,
            request.TestFraction ?? current.TestFraction
        );
        if (fractions.Problem is { } problem)
            return TypedResults.ValidationProblem(
                new Dictionary<string, string[]> { [problem.Field] = [problem.Message] }
            );
        if (
            !await ingestion.ResplitAsync(
                id,
                fractions,
                request.Seed ?? current.SplitSeed,
                request.KeepNearDuplicatesTogether ?? true,
                cancellation
            )
        )
            return NotFound(id);
        return TypedResults.Ok(
            (await DatasetSummaries.GetAsync(db, id, options.Value.MinImagesPerClass, cancellation))!
        );
    }

    internal static async Task<Results<NoContent, ProblemHttpResult>> Delete(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        // The row lock waits for job creations holding the data set, so the count below sees their jobs.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellation);
        if (await RowLocks.LockDatasetAsync(db, id, cancellation) is null)
            return NotFound(id);
        var jobs = await db.TrainingJobs.CountAsync(j => j.DatasetId == id, cancellation);
        if (jobs > 0)
            return Problems.Conflict(
                "Data set in use",
                $"id: {jobs} training job(s) and their models were trained on data set {id}; it cannot be deleted "
                    + "while they exist."
            );
        await db.Datasets.Where(d => d.Id == id).ExecuteDeleteAsync(cancellation);
        await transaction.CommitAsync(cancellation);
        return TypedResults.NoContent();
    }

    internal static ProblemHttpResult NotFound(Guid id) => Problems.NotFound("data set", id);

    private const string UploadDescription = """
        The zip holds one folder per class (cats/001.jpg), optionally under train/, val/ and test/ folders that fix
        the split; other images are split per class with validationFraction, testFraction and seed. Images under an
        unlabeled/ folder are stored without a label (never trained on; GET …/suggestions ranks them for labelling).
        A health report (GET …/health) is computed in the background. JPEG, PNG, BMP,
        GIF and WebP are accepted. Files that are not images, duplicates and conflicting labels are listed in
        `rejected`; an archive that is unreadable, hostile (escaping paths, links, nested archives, zip bombs) or
        over the limits, or that leaves fewer than 2 classes, is refused whole and nothing is stored.
        """;
}
