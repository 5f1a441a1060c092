using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Storage;

namespace TransferApi.Features.Datasets;

public sealed record ClassCount(string Name, int ImageCount);

public sealed record RejectedFile(string Entry, string Reason);

public sealed record DatasetResponse(Guid Id, string Name, DateTime CreatedAt, int ImageCount, IReadOnlyList<ClassCount> Classes, IReadOnlyList<RejectedFile> Rejected);

public static class DatasetEndpoints
{
    public static RouteGroupBuilder MapDatasetEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/datasets").WithTags("Datasets");
        group.MapPost("/", Upload)
            .DisableAntiforgery()
            .Accepts<IFormFile>("multipart/form-data")
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .WithSummary("Upload a zip of folder-per-class images")
            .WithDescription("The zip holds one folder per class (cats/001.jpg), optionally under train/, val/ and test/ folders that fix the split. "
                + "Files that are not images are listed in `rejected`; an archive that is unreadable, hostile or over the limits, or that leaves fewer than 2 classes, is refused whole and nothing is stored.");
        group.MapGet("/", List).WithSummary("List data sets, newest first");
        group.MapGet("/{id:guid}", Get).ProducesProblem(StatusCodes.Status404NotFound).WithSummary("Read a data set");
        group.MapDelete("/{id:guid}", Delete).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Delete a data set that no training job uses");
        group.MapDatasetImageEndpoints();
        return group;
    }

    /// <param name="name">A display name for the data set.</param>
    /// <param name="file">The zip archive.</param>
    internal static async Task<Results<Created<DatasetResponse>, ValidationProblem, ProblemHttpResult>> Upload(
        [FromForm] string name, IFormFile file, TransferDbContext db, IOptions<UploadOptions> limits, CancellationToken cancellation)
    {
        name = name.Trim();
        if (name.Length is 0 or > 200)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["name"] = ["name must be 1 to 200 characters."] });

        DatasetArchive archive;
        await using (var stream = file.OpenReadStream())
        {
            try
            {
                archive = DatasetArchiveReader.Read(stream, limits.Value);
            }
            catch (UploadRejectedException e)
            {
                return TypedResults.Problem(e.Message, statusCode: e.StatusCode, title: e.Title);
            }
        }
        var labels = archive.Labels;
        if (labels.Count < 2)
            return TypedResults.Problem(
                $"file: training needs at least 2 classes (one folder per class); this archive has {labels.Count} usable class(es)"
                + (archive.Rejected.Count > 0 ? $" and {archive.Rejected.Count} rejected file(s), e.g. '{archive.Rejected[0].Entry}': {archive.Rejected[0].Reason}." : "."),
                statusCode: StatusCodes.Status422UnprocessableEntity, title: "Not enough classes");

        var dataset = new Dataset
        {
            Id = Guid.CreateVersion7(),
            Name = name,
            CreatedAt = DateTime.UtcNow,
            ImageCount = archive.Images.Count,
            Rejected = archive.Rejected.Select(r => new RejectedEntry { Entry = r.Entry, Reason = r.Reason }).ToList(),
            Images = archive.Images.Select(i => new DatasetImage
            {
                Id = Guid.CreateVersion7(),
                Label = i.Label,
                Split = i.Split,
                FileName = i.Entry,
                Format = i.Header.Format,
                Width = i.Header.Width,
                Height = i.Header.Height,
                Sha256 = i.Sha256,
                Data = i.Data,
            }).ToList(),
        };
        db.Datasets.Add(dataset);
        // One SaveChanges, one transaction: the data set appears whole or not at all.
        await db.SaveChangesAsync(cancellation);
        var response = ToResponse(dataset, archive.Images.GroupBy(i => i.Label).Select(g => new ClassCount(g.Key, g.Count())));
        return TypedResults.Created($"/api/datasets/{dataset.Id}", response);
    }

    internal static async Task<Ok<Page<DatasetResponse>>> List(TransferDbContext db, int? page, int? pageSize, CancellationToken cancellation)
    {
        var datasets = await db.Datasets.AsNoTracking().OrderByDescending(d => d.CreatedAt).ToPageAsync(page, pageSize, cancellation);
        var ids = datasets.Items.Select(d => d.Id).ToList();
        var counts = await ClassCountsAsync(db.DatasetImages.Where(i => ids.Contains(i.DatasetId)), cancellation);
        return TypedResults.Ok(new Page<DatasetResponse>(
            datasets.Items.Select(d => ToResponse(d, counts[d.Id])).ToList(), datasets.PageNumber, datasets.PageSize, datasets.TotalCount));
    }

    internal static async Task<Results<Ok<DatasetResponse>, ProblemHttpResult>> Get(Guid id, TransferDbContext db, CancellationToken cancellation)
    {
        var dataset = await db.Datasets.AsNoTracking().FirstOrDefaultAsync(d => d.Id == id, cancellation);
        if (dataset is null) return NotFound(id);
        var counts = await ClassCountsAsync(db.DatasetImages.Where(i => i.DatasetId == id), cancellation);
        return TypedResults.Ok(ToResponse(dataset, counts[id]));
    }

    internal static async Task<Results<NoContent, ProblemHttpResult>> Delete(Guid id, TransferDbContext db, CancellationToken cancellation)
    {
        if (!await db.Datasets.AnyAsync(d => d.Id == id, cancellation)) return NotFound(id);
        var jobs = await db.TrainingJobs.CountAsync(j => j.DatasetId == id, cancellation);
        if (jobs > 0)
            return Problems.Conflict("Data set in use",
                $"id: {jobs} training job(s) and their models were trained on data set {id}; it cannot be deleted while they exist.");
        await db.Datasets.Where(d => d.Id == id).ExecuteDeleteAsync(cancellation);
        return TypedResults.NoContent();
    }

    private static ProblemHttpResult NotFound(Guid id) => Problems.NotFound("data set", id);

    private static async Task<ILookup<Guid, ClassCount>> ClassCountsAsync(IQueryable<DatasetImage> images, CancellationToken cancellation)
    {
        var rows = await images.GroupBy(i => new { i.DatasetId, i.Label })
            .Select(g => new { g.Key.DatasetId, g.Key.Label, Count = g.Count() })
            .ToListAsync(cancellation);
        return rows.ToLookup(r => r.DatasetId, r => new ClassCount(r.Label, r.Count));
    }

    private static DatasetResponse ToResponse(Dataset dataset, IEnumerable<ClassCount> classes) => new(
        dataset.Id, dataset.Name, dataset.CreatedAt, dataset.ImageCount,
        classes.OrderBy(c => c.Name, StringComparer.Ordinal).ToList(),
        dataset.Rejected.Select(r => new RejectedFile(r.Entry, r.Reason)).ToList());
}
