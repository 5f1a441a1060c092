using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using SixLabors.ImageSharp;
using TransferApi.Http;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training;
using TransferApi.Training.Imaging;

namespace TransferApi.Features.Datasets;

/// <summary>Browsing and editing the images of a data set.</summary>
public static class DatasetImageEndpoints
{
    private const int MaxLabelLength = 200;

    public static RouteGroupBuilder MapDatasetImageEndpoints(this RouteGroupBuilder datasets)
    {
        datasets
            .MapGet("/{id:guid}/images", List)
            .WithName("ListDatasetImages")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("List a data set's images, optionally by label and split");
        datasets
            .MapPost("/{id:guid}/images", Add)
            .WithName("AddDatasetImages")
            .AcceptsIdempotencyKey()
            .RequireRateLimiting(RateLimits.Upload)
            .DisableAntiforgery()
            .Accepts<IFormFileCollection>("multipart/form-data")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .WithSummary("Add images to a data set: one or more `file` parts and a `label` (none: unlabeled)")
            .WithDescription(
                """
                Each file is checked like an archive entry; duplicates and conflicts are listed in `rejected`.
                Without `split` the new images are split per class with the data set's shares and seed. Without
                `label` they are stored unlabeled (split Unlabeled): embedded and analysed, never trained on.
                """
            );
        datasets
            .MapGet("/{id:guid}/images/{imageId:guid}", Get)
            .WithName("GetDatasetImage")
            .Produces<Stream>(
                StatusCodes.Status200OK,
                "image/jpeg",
                "image/png",
                "image/bmp",
                "image/gif",
                "image/webp"
            )
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary(
                "Download a stored image (or, with thumbnail=true, a JPEG at most 128 pixels on its longer side)"
            );
        datasets
            .MapPatch("/{id:guid}/images/{imageId:guid}", Update)
            .WithName("UpdateDatasetImage")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .WithSummary("Relabel an image (or label an unlabeled one) or move it to another split");
        datasets
            .MapDelete("/{id:guid}/images/{imageId:guid}", Delete)
            .WithName("DeleteDatasetImage")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Remove an image from a data set");
        return datasets;
    }

    /// <param name="split">Train, Validation, Test, Unassigned or Unlabeled.</param>
    internal static async Task<Results<Ok<Page<DatasetImageResponse>>, ProblemHttpResult>> List(
        Guid id,
        TransferDbContext db,
        string? label,
        string? split,
        int? page,
        int? pageSize,
        CancellationToken cancellation
    )
    {
        if (!await db.Datasets.AnyAsync(d => d.Id == id, cancellation))
            return DatasetEndpoints.NotFound(id);
        var images = db.DatasetImages.AsNoTracking().Where(i => i.DatasetId == id);
        if (label is not null)
            images = images.Where(i => i.Label == label);
        if (split is not null)
        {
            if (!Enum.TryParse<DataSplit>(split, ignoreCase: true, out var wanted) || !Enum.IsDefined(wanted))
                return TypedResults.Problem(
                    $"split: '{split}' is not one of {string.Join(", ", Enum.GetNames<DataSplit>())}.",
                    statusCode: 400,
                    title: "Invalid split"
                );
            images = images.Where(i => i.Split == wanted);
        }
        var result = await images
            .OrderBy(i => i.Label)
            .ThenBy(i => i.FileName)
            .Select(Summary)
            .ToPageAsync(page, pageSize, cancellation);
        return TypedResults.Ok(result);
    }

    /// <param name="label">The class of every file in this request (omitted: stored unlabeled).</param>
    /// <param name="split">Train, Validation or Test to fix the split; omitted: split like the rest of the data
    /// set.</param>
    internal static async Task<Results<Ok<AddImagesResponse>, ValidationProblem, ProblemHttpResult>> Add(
        Guid id,
        [FromForm] string? label,
        [FromForm] DataSplit? split,
        IFormFileCollection files,
        TransferDbContext db,
        DatasetIngestion ingestion,
        IOptions<UploadOptions> limits,
        CancellationToken cancellation
    )
    {
        // No label field stores the images unlabeled; a blank one is a mistake.
        label = label?.Trim();
        var errors = new Dictionary<string, string[]>();
        if (label is not null && LabelProblem(label) is { } problem)
            errors["label"] = [problem];
        if (label is null && split is not null and not DataSplit.Unlabeled)
            errors["split"] = ["an image without a label cannot be placed in a split; give it a label too."];
        if (label is not null && split is DataSplit.Unlabeled)
            errors["split"] = ["Unlabeled is for images without a label; omit label to store them unlabeled."];
        var images = files.GetFiles("file");
        if (images.Count == 0)
            errors["file"] = ["send one or more images as multipart parts named 'file'."];
        if (images.Count > limits.Value.MaxFilesPerRequest)
            errors["file"] =
            [
                $"at most {limits.Value.MaxFilesPerRequest} files per request; this one has {images.Count}.",
            ];
        if (errors.Count > 0)
            return TypedResults.ValidationProblem(errors);
        var tooLarge = images.FirstOrDefault(f => f.Length > limits.Value.MaxEntryBytes);
        if (tooLarge is not null)
            return TypedResults.Problem(
                $"file: '{tooLarge.FileName}' is {tooLarge.Length:N0} bytes; the limit is "
                    + $"{limits.Value.MaxEntryBytes:N0}.",
                statusCode: 413,
                title: "Image too large"
            );

        var splitFixed = split is not null and not DataSplit.Unassigned and not DataSplit.Unlabeled;
        var incoming = images.Select(f => new IncomingImage(
            Path.GetFileName(f.FileName),
            label,
            split ?? DataSplit.Unassigned,
            splitFixed,
            ReadAll(f)
        ));
        var report = await ingestion.AddAsync(id, incoming, cancellation);
        if (report is null)
            return DatasetEndpoints.NotFound(id);
        var added = await db
            .DatasetImages.AsNoTracking()
            .Where(i => report.Added.Contains(i.Id))
            .OrderBy(i => i.FileName)
            .Select(Summary)
            .ToListAsync(cancellation);
        return TypedResults.Ok(
            new AddImagesResponse(id, added, report.Rejected.Select(r => new RejectedFile(r.Entry, r.Reason)).ToList())
        );
    }

    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> Get(
        Guid id,
        Guid imageId,
        TransferDbContext db,
        IOptions<UploadOptions> limits,
        CancellationToken cancellation,
        bool thumbnail = false
    )
    {
        var image = await db
            .DatasetImages.AsNoTracking()
            .Where(i => i.DatasetId == id && i.Id == imageId)
            // A thumbnail of a large photo comes from its working copy, the same picture at a fraction of the decode.
            .Select(i => new { Data = thumbnail ? i.WorkingCopy ?? i.Data : i.Data, i.FileName })
            .FirstOrDefaultAsync(cancellation);
        if (image is null)
            return ImageNotFound(imageId);
        if (!thumbnail)
            return TypedResults.File(
                image.Data,
                Image.DetectFormat(image.Data)?.DefaultMimeType ?? "application/octet-stream",
                Path.GetFileName(image.FileName)
            );

        return TypedResults.File(Thumbnails.Jpeg(image.Data, limits.Value.ImageLimits), "image/jpeg");
    }

    internal static async Task<Results<Ok<DatasetImageResponse>, ValidationProblem, ProblemHttpResult>> Update(
        Guid id,
        Guid imageId,
        UpdateImageRequest request,
        TransferDbContext db,
        DatasetIngestion ingestion,
        CancellationToken cancellation
    )
    {
        var label = request.Label?.Trim();
        if (label is not null && LabelProblem(label) is { } problem)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["label"] = [problem] });
        if (request.Split is { } s && (!Enum.IsDefined(s) || s == DataSplit.Unlabeled))
            return TypedResults.ValidationProblem(
                new Dictionary<string, string[]>
                {
                    ["split"] = ["split must be Train, Validation, Test or Unassigned."],
                }
            );
        if (!await ingestion.UpdateImageAsync(id, imageId, label, request.Split, cancellation))
            return ImageNotFound(imageId);
        var image = db.DatasetImages.Where(i => i.DatasetId == id && i.Id == imageId);
        var updated = await image.AsNoTracking().Select(Summary).FirstOrDefaultAsync(cancellation);
        return updated is null ? ImageNotFound(imageId) : TypedResults.Ok(updated);
    }

    internal static async Task<Results<NoContent, ProblemHttpResult>> Delete(
        Guid id,
        Guid imageId,
        DatasetIngestion ingestion,
        CancellationToken cancellation
    )
    {
        return await ingestion.RemoveImageAsync(id, imageId, cancellation)
            ? TypedResults.NoContent()
            : ImageNotFound(imageId);
    }

    private static string? LabelProblem(string label) =>
        label.Length is 0 or > MaxLabelLength
        || label.Any(char.IsControl)
        || label.Contains('/', StringComparison.Ordinal)
            ? $"label must be 1 to {MaxLabelLength} characters, without '/' or control characters."
            : null;

    private static ProblemHttpResult ImageNotFound(Guid imageId) =>
        Problems.NotFound("image in this data set", imageId);

    private static byte[] ReadAll(IFormFile file)
    {
        using var stream = file.OpenReadStream();
        using var buffer = new MemoryStream((int)file.Length);
        stream.CopyTo(buffer);
        return buffer.ToArray();
    }

    private static readonly System.Linq.Expressions.Expression<Func<DatasetImage, DatasetImageResponse>> Summary =
        i => new DatasetImageResponse(
            i.Id,
            i.Label,
            i.Split,
            i.SplitFixed,
            i.FileName,
            i.Format,
            i.Width,
            i.Height,
            i.SizeBytes,
            Convert.ToHexStringLower(i.Sha256)
        );
}
