using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;

namespace TransferApi.Features.Models;

/// <summary>What an uploaded zip gave a batch prediction: the images to score and the files left out.</summary>
public sealed record StoredUpload(int Images, long Bytes, List<RejectedEntry> Rejected);

/// <summary>
/// Stores a zip uploaded to be scored, in the caller's transaction, a batch of files at a time so memory stays
/// bounded. Every file at any depth is offered as an image (folders only name it); each is checked as data set
/// images are (limits, full decode). Files that are not images are listed as rejected; one over the pixel limits, or
/// the tenant's storage quota, refuses the upload whole. The images are kept only until the batch ends.
/// </summary>
public sealed class BatchPredictionUpload(
    IOptions<UploadOptions> uploads,
    IOptions<DatasetOptions> datasets,
    TenantQuotas quotas
)
{
    public async Task<StoredUpload> StoreAsync(
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
        return new StoredUpload(position, bytes, rejected);
    }
}
