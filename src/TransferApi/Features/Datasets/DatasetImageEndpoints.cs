using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Processing;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Training.Imaging;
using TransferApi.Training.Training;

namespace TransferApi.Features.Datasets;

public sealed record DatasetImageResponse(Guid Id, string Label, DataSplit Split, string FileName, string Format, int Width, int Height, int SizeBytes, string Sha256);

/// <summary>Browsing the images of a data set: list with filters, and each stored image or its thumbnail.</summary>
public static class DatasetImageEndpoints
{
    public const int ThumbnailSide = 128;

    public static RouteGroupBuilder MapDatasetImageEndpoints(this RouteGroupBuilder datasets)
    {
        datasets.MapGet("/{id:guid}/images", List).ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("List a data set's images, optionally by label and split");
        datasets.MapGet("/{id:guid}/images/{imageId:guid}", Get)
            .Produces<byte[]>(StatusCodes.Status200OK, "image/jpeg", "image/png", "image/bmp", "image/gif", "image/webp").ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Download a stored image (or, with thumbnail=true, a JPEG at most 128 pixels on its longer side)");
        return datasets;
    }

    /// <param name="split">Train, Validation, Test or Unassigned.</param>
    internal static async Task<Results<Ok<Page<DatasetImageResponse>>, ProblemHttpResult>> List(
        Guid id, TransferDbContext db, string? label, string? split, int? page, int? pageSize, CancellationToken cancellation)
    {
        if (!await db.Datasets.AnyAsync(d => d.Id == id, cancellation)) return Problems.NotFound("data set", id);
        var images = db.DatasetImages.AsNoTracking().Where(i => i.DatasetId == id);
        if (label is not null) images = images.Where(i => i.Label == label);
        if (split is not null)
        {
            if (!Enum.TryParse<DataSplit>(split, ignoreCase: true, out var wanted) || !Enum.IsDefined(wanted))
                return TypedResults.Problem($"split: '{split}' is not one of {string.Join(", ", Enum.GetNames<DataSplit>())}.", statusCode: 400, title: "Invalid split");
            images = images.Where(i => i.Split == wanted);
        }
        var result = await images.OrderBy(i => i.Label).ThenBy(i => i.FileName)
            .Select(i => new { i.Id, i.Label, i.Split, i.FileName, i.Format, i.Width, i.Height, Size = i.Data.Length, i.Sha256 })
            .ToPageAsync(page, pageSize, cancellation);
        return TypedResults.Ok(new Page<DatasetImageResponse>(
            result.Items.Select(i => new DatasetImageResponse(i.Id, i.Label, i.Split, i.FileName, i.Format, i.Width, i.Height, i.Size, Convert.ToHexStringLower(i.Sha256))).ToList(),
            result.PageNumber, result.PageSize, result.TotalCount));
    }

    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> Get(
        Guid id, Guid imageId, TransferDbContext db, IOptions<UploadOptions> limits, CancellationToken cancellation, bool thumbnail = false)
    {
        var image = await db.DatasetImages.AsNoTracking().Where(i => i.DatasetId == id && i.Id == imageId)
            .Select(i => new { i.Data, i.FileName }).FirstOrDefaultAsync(cancellation);
        if (image is null) return Problems.NotFound("image in this data set", imageId);
        if (!thumbnail)
            return TypedResults.File(image.Data, Image.DetectFormat(image.Data)?.DefaultMimeType ?? "application/octet-stream", Path.GetFileName(image.FileName));

        using var decoded = ImageReader.Decode(image.Data, limits.Value.ImageLimits);
        decoded.Mutate(x => x.Resize(new ResizeOptions { Size = new Size(ThumbnailSide, ThumbnailSide), Mode = ResizeMode.Max }));
        using var buffer = new MemoryStream();
        await decoded.SaveAsJpegAsync(buffer, cancellation);
        return TypedResults.File(buffer.ToArray(), "image/jpeg");
    }
}
