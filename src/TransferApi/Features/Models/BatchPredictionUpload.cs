using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;

namespace TransferApi.Features.Models;

/// <summary>What an uploaded zip gave a batch prediction: the images to score and the files left out.</summary>
internal sealed record StoredUpload(int Images, List<RejectedEntry> Rejected);

/// <summary>
/// Stores a batch prediction with the zip uploaded to be scored, in one transaction, a batch of files at a time so
/// memory stays bounded. Every file at any depth is offered as an image (folders only name it); each is checked as
/// data set images are (limits, full decode). Files that are not images are listed as rejected; one over the pixel
/// limits, or the tenant's storage quota, refuses the upload whole. The images are kept only until the batch ends.
/// </summary>
public sealed class BatchPredictionUpload(
    IOptions<UploadOptions> uploads,
    IOptions<DatasetOptions> datasets,
    TenantQuotas quotas
)
{
    /// <summary>Stores <paramref name="batch"/> (its settings checked) with the zip's images in one transaction;
    /// returns the stored batch, or refuses the upload whole (<see cref="DomainException"/>) storing nothing.</summary>
    public async Task<BatchPrediction> CreateAsync(
        TransferDbContext db,
        BatchPrediction batch,
        IFormFile file,
        CancellationToken cancellation
    )
    {
        batch.ArchiveName = file.FileName.Length > 255 ? file.FileName[..255] : file.FileName;
        await using var stream = file.OpenReadStream();
        using var zip = UploadedZip.Open(stream, uploads.Value);
        await using var transaction = await db.Database.BeginTransactionAsync(cancellation);
        db.BatchPredictions.Add(batch);
        await db.SaveChangesAsync(cancellation);
        var stored = await StoreAsync(db, batch.Id, zip, cancellation);
        // Storing the images cleared the change tracker: the batch is read again to record them.
        var created = await db.BatchPredictions.FirstAsync(b => b.Id == batch.Id, cancellation);
        (created.ImagesTotal, created.Rejected) = (stored.Images, stored.Rejected);
        await db.SaveChangesAsync(cancellation);
        await transaction.CommitAsync(cancellation);
        return created;
    }

    private async Task<StoredUpload> StoreAsync(
        TransferDbContext db,
        Guid batchId,
        UploadedZip zip,
        CancellationToken cancellation
    )
    {
        var limits = uploads.Value.ImageLimits;
        var rejected = new List<RejectedEntry>();
        var (position, bytes) = (0, 0L);
        var files = zip.Files.Select(f => (f.Name, Data: zip.Read(f)));
        foreach (
            var batch in ImageChecks.Batches(
                files,
                f => f.Data.Length,
                datasets.Value.IngestBatchSize,
                datasets.Value.IngestBatchBytes
            )
        )
        {
            var checks = ImageChecks.CheckAll(batch.Select(f => f.Data).ToList(), limits, cancellation);
            for (var k = 0; k < batch.Count; k++)
            {
                var ((name, data), check) = (batch[k], checks[k]);
                ImageChecks.ThrowIfOverLimits(check, name);
                if (check.Error is { } error)
                {
                    rejected.Add(new RejectedEntry { Entry = name, Reason = error.Message });
                    continue;
                }
                db.BatchPredictionImages.Add(
                    new BatchPredictionImage
                    {
                        Id = Guid.CreateVersion7(),
                        BatchId = batchId,
                        Position = position++,
                        FileName = name,
                        Sha256 = check.Sha256,
                        Data = data,
                        WorkingCopy = check.WorkingCopy,
                    }
                );
                bytes += data.Length;
            }
            await db.SaveChangesAsync(cancellation);
            // Stored rows are not needed again: release their bytes.
            db.ChangeTracker.Clear();
        }
        if (position == 0)
            throw new DomainException(
                ErrorKind.Unusable,
                "No images to score",
                "file: the archive holds no image"
                    + (
                        rejected.Count > 0
                            ? $"; {rejected.Count} file(s) are not images, e.g. '{rejected[0].Entry}': "
                                + $"{rejected[0].Reason}."
                            : "."
                    )
            );
        await quotas.ThrowIfStorageOverLimitAsync(db, bytes, cancellation);
        return new StoredUpload(position, rejected);
    }
}
