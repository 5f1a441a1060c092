using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using TransferApi.Jobs;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training;

namespace TransferApi.Features.Datasets;

/// <summary>A file a client sent that was not stored, and why.</summary>
public sealed record Rejection(string Entry, string Reason);

/// <summary>An image file offered to a data set (from a zip entry or a multipart part).</summary>
/// <param name="Label">Its class; null stores it unlabeled (split <see cref="DataSplit.Unlabeled"/>).</param>
public sealed record IncomingImage(string Entry, string? Label, DataSplit Split, bool SplitFixed, byte[] Data);

public sealed record IngestionReport(Guid DatasetId, IReadOnlyList<Guid> Added, IReadOnlyList<Rejection> Rejected);

/// <summary>
/// Writes images into PostgreSQL inside one transaction, a batch at a time, so memory stays bounded whatever
/// the upload's size and a failure (or a disconnect) leaves nothing behind. Each image is checked (limits,
/// full decode, SHA-256); exact duplicates are stored once and the same bytes under another label are
/// reported as a conflict. Images the client did not place in a split are split per class, seeded.
/// </summary>
public sealed class DatasetIngestion(
    IDbContextFactory<TransferDbContext> dbFactory,
    TenantContext tenant,
    IOptions<UploadOptions> uploads,
    IOptions<DatasetOptions> datasets,
    TenantQuotas quotas,
    DatasetHealthScheduler health,
    Telemetry telemetry,
    ILogger<DatasetIngestion> logger
)
{
    /// <summary>Creates a data set from an archive; refuses it whole when fewer than 2 classes end up with
    /// images.</summary>
    public async Task<IngestionReport> CreateAsync(
        string name,
        DatasetArchive archive,
        SplitFractions fractions,
        long seed,
        CancellationToken cancellation
    )
    {
        await using var db = await tenant.CreateDbContextAsync(dbFactory, cancellation);
        await using var transaction = await db.Database.BeginTransactionAsync(cancellation);
        var dataset = new Dataset
        {
            Id = Guid.CreateVersion7(),
            Name = name,
            CreatedAt = DateTime.UtcNow,
            ValidationFraction = fractions.Validation,
            TestFraction = fractions.Test,
            SplitSeed = seed,
            Version = 1,
        };
        using var span = Telemetry.StartSpan("dataset create", ("transferapi.dataset.id", dataset.Id));
        db.Datasets.Add(dataset);
        await db.SaveChangesAsync(cancellation);

        var rejected = new List<Rejection>();
        var incoming = archive
            .ReadFiles()
            .Select(f =>
            {
                if (f.File is null)
                    rejected.Add(new Rejection(f.Entry, f.Rejection!));
                return f.File is null
                    ? null
                    : new IncomingImage(f.Entry, f.File.Label, f.File.Split, f.File.SplitFromFolder, f.File.Data);
            })
            .OfType<IncomingImage>();
        var added = await WriteAsync(db, dataset.Id, incoming, rejected, cancellation);

        var labels = await db
            .DatasetImages.Where(i => i.DatasetId == dataset.Id && i.Label != null)
            .Select(i => i.Label)
            .Distinct()
            .CountAsync(cancellation);
        if (labels < 2)
            throw new DomainException(
                ErrorKind.Unusable,
                "Not enough classes",
                $"file: training needs at least 2 classes (one folder per class); this archive has {labels} class(es) "
                    + "with images"
                    + (
                        rejected.Count > 0
                            ? $" and {rejected.Count} rejected file(s), e.g. '{rejected[0].Entry}': "
                                + $"{rejected[0].Reason}."
                            : "."
                    )
            );

        await AssignSplitsAsync(db, dataset, onlyUnassigned: true, groups: [], cancellation);
        var stored = await db.Datasets.FirstAsync(d => d.Id == dataset.Id, cancellation);
        stored.Rejected = rejected.Select(r => new RejectedEntry { Entry = r.Entry, Reason = r.Reason }).ToList();
        await db.SaveChangesAsync(cancellation);
        await CheckQuotaAsync(db, dataset.Id, added, cancellation);
        await transaction.CommitAsync(cancellation);
        await health.RequestAsync(dataset.Id, cancellation: CancellationToken.None);
        return Stored(new IngestionReport(dataset.Id, added, rejected));
    }

    /// <summary>Adds images to an existing data set; concurrent additions to one data set take turns.</summary>
    public async Task<IngestionReport?> AddAsync(
        Guid datasetId,
        IEnumerable<IncomingImage> images,
        CancellationToken cancellation
    )
    {
        await using var db = await tenant.CreateDbContextAsync(dbFactory, cancellation);
        await using var transaction = await db.Database.BeginTransactionAsync(cancellation);
        // Row lock on the data set: duplicate detection and split assignment see every earlier addition.
        var dataset = await RowLocks.LockDatasetAsync(db, datasetId, cancellation);
        if (dataset is null)
            return null;
        using var span = Telemetry.StartSpan("dataset add images", ("transferapi.dataset.id", datasetId));
        var rejected = new List<Rejection>();
        var added = await WriteAsync(db, datasetId, images, rejected, cancellation);
        await AssignSplitsAsync(db, dataset, onlyUnassigned: true, groups: [], cancellation);
        await CheckQuotaAsync(db, datasetId, added, cancellation);
        if (added.Count > 0)
            dataset.Version++;
        await db.SaveChangesAsync(cancellation);
        await transaction.CommitAsync(cancellation);
        if (added.Count > 0)
            await health.RequestAsync(datasetId, cancellation: CancellationToken.None);
        return Stored(new IngestionReport(datasetId, added, rejected));
    }

    /// <summary>Refuses the upload whole (the caller's transaction rolls back) when its images take the tenant past its
    /// storage quota.</summary>
    private async Task CheckQuotaAsync(
        TransferDbContext db,
        Guid datasetId,
        List<Guid> added,
        CancellationToken cancellation
    )
    {
        var incoming =
            added.Count == 0
                ? 0
                : await db
                    .DatasetImages.Where(i => i.DatasetId == datasetId && added.Contains(i.Id))
                    .SumAsync(i => (long)i.SizeBytes, cancellation);
        await quotas.ThrowIfStorageOverLimitAsync(db, incoming, cancellation);
    }

    /// <summary>Counts and logs a committed upload.</summary>
    private IngestionReport Stored(IngestionReport report)
    {
        telemetry.ImagesIngested.Add(report.Added.Count, new KeyValuePair<string, object?>("outcome", "stored"));
        telemetry.ImagesIngested.Add(report.Rejected.Count, new KeyValuePair<string, object?>("outcome", "rejected"));
        Activity
            .Current?.SetTag("transferapi.images.stored", report.Added.Count)
            .SetTag("transferapi.images.rejected", report.Rejected.Count);
        logger.LogInformation(
            "Dataset {DatasetId}: {Stored} image(s) stored, {Rejected} rejected",
            report.DatasetId,
            report.Added.Count,
            report.Rejected.Count
        );
        return report;
    }

    /// <summary>
    /// Re-splits every image whose split the client did not fix, with new shares and seed; with <paramref
    /// name="keepNearDuplicatesTogether"/> each near-duplicate group of the latest health report goes to one split
    /// (the split of a member whose split is fixed, if one is).
    /// </summary>
    public async Task<bool> ResplitAsync(
        Guid datasetId,
        SplitFractions fractions,
        long seed,
        bool keepNearDuplicatesTogether,
        CancellationToken cancellation
    )
    {
        await using var db = await tenant.CreateDbContextAsync(dbFactory, cancellation);
        await using var transaction = await db.Database.BeginTransactionAsync(cancellation);
        var dataset = await RowLocks.LockDatasetAsync(db, datasetId, cancellation);
        if (dataset is null)
            return false;
        dataset.ValidationFraction = fractions.Validation;
        dataset.TestFraction = fractions.Test;
        dataset.SplitSeed = seed;
        dataset.Version++;
        await db.SaveChangesAsync(cancellation);
        var groups = keepNearDuplicatesTogether
            ? (
                await db
                    .DatasetHealth.Where(h => h.DatasetId == datasetId)
                    .Select(h => h.Report)
                    .FirstOrDefaultAsync(cancellation)
            )
                ?.NearDuplicates.Select(g => g.Images.Select(i => i.ImageId).ToList())
                .ToList()
                ?? []
            : [];
        await AssignSplitsAsync(db, dataset, onlyUnassigned: false, groups, cancellation);
        await transaction.CommitAsync(cancellation);
        await health.RequestAsync(datasetId, cancellation: CancellationToken.None);
        return true;
    }

    /// <summary>
    /// Relabels an image and/or moves it to a split the client fixes. An unlabeled image given a label joins the split
    /// the data set's shares and seed give it (unless the request fixes one). Null when there is no such image.
    /// </summary>
    public async Task<bool> UpdateImageAsync(
        Guid datasetId,
        Guid imageId,
        string? label,
        DataSplit? split,
        CancellationToken cancellation
    )
    {
        await using var db = await tenant.CreateDbContextAsync(dbFactory, cancellation);
        await using var transaction = await db.Database.BeginTransactionAsync(cancellation);
        var dataset = await RowLocks.LockDatasetAsync(db, datasetId, cancellation);
        var image = dataset is null
            ? null
            : await db.DatasetImages.FirstOrDefaultAsync(
                i => i.DatasetId == datasetId && i.Id == imageId,
                cancellation
            );
        if (dataset is null || image is null)
            return false;
        if (label is null && split is null)
            return true;
        if (image.Label is null && label is null)
            throw new DomainException(
                ErrorKind.InvalidInput,
                "Image has no label",
                $"split: image {imageId} is unlabeled; give it a label (it then joins a split)."
            );
        var labelling = image.Label is null;
        image.Label = label ?? image.Label;
        if (split is not null)
            (image.Split, image.SplitFixed) = (split.Value, split.Value != DataSplit.Unassigned);
        else if (labelling)
            (image.Split, image.SplitFixed) = (DataSplit.Unassigned, false);
        dataset.Version++;
        await db.SaveChangesAsync(cancellation);
        await AssignSplitsAsync(db, dataset, onlyUnassigned: true, groups: [], cancellation);
        await transaction.CommitAsync(cancellation);
        await health.RequestAsync(datasetId, cancellation: CancellationToken.None);
        return true;
    }

    /// <summary>Removes an image; false when there is no such image.</summary>
    public async Task<bool> RemoveImageAsync(Guid datasetId, Guid imageId, CancellationToken cancellation)
    {
        await using var db = await tenant.CreateDbContextAsync(dbFactory, cancellation);
        await using var transaction = await db.Database.BeginTransactionAsync(cancellation);
        var dataset = await RowLocks.LockDatasetAsync(db, datasetId, cancellation);
        if (dataset is null)
            return false;
        var removed = await db
            .DatasetImages.Where(i => i.DatasetId == datasetId && i.Id == imageId)
            .ExecuteDeleteAsync(cancellation);
        if (removed == 0)
            return false;
        dataset.Version++;
        await db.SaveChangesAsync(cancellation);
        await transaction.CommitAsync(cancellation);
        await health.RequestAsync(datasetId, cancellation: CancellationToken.None);
        return true;
    }

    private async Task<List<Guid>> WriteAsync(
        TransferDbContext db,
        Guid datasetId,
        IEnumerable<IncomingImage> images,
        List<Rejection> rejected,
        CancellationToken cancellation
    )
    {
        var limits = uploads.Value.ImageLimits;
        var options = datasets.Value;
        var known = (
            await db
                .DatasetImages.Where(i => i.DatasetId == datasetId)
                .Select(i => new
                {
                    i.Sha256,
                    i.Label,
                    i.FileName,
                })
                .ToListAsync(cancellation)
        ).ToDictionary(i => Convert.ToHexString(i.Sha256), i => (i.Label, i.FileName));
        var added = new List<Guid>();
        foreach (
            var batch in ImageChecks.Batches(
                images,
                i => i.Data.Length,
                options.IngestBatchSize,
                options.IngestBatchBytes
            )
        )
        {
            var checks = ImageChecks.CheckAll(batch.Select(i => i.Data).ToList(), limits, cancellation);
            for (var k = 0; k < batch.Count; k++)
            {
                var (image, check) = (batch[k], checks[k]);
                ImageChecks.ThrowIfOverLimits(check, image.Entry);
                if (check.Error is { } error)
                {
                    rejected.Add(new Rejection(image.Entry, error.Message));
                    continue;
                }
                var key = Convert.ToHexString(check.Sha256);
                if (known.TryGetValue(key, out var first))
                {
                    rejected.Add(
                        new Rejection(
                            image.Entry,
                            first.Label == image.Label || image.Label is null
                                    ? $"duplicate of '{first.FileName}' (stored once)"
                                : first.Label is null
                                    ? $"conflict: the same image is already stored unlabeled ('{first.FileName}'); "
                                        + "label that one"
                                : $"conflict: the same image is already labelled '{first.Label}' ('{first.FileName}')"
                        )
                    );
                    continue;
                }
                known[key] = (image.Label, image.Entry);
                var row = new DatasetImage
                {
                    Id = Guid.CreateVersion7(),
                    DatasetId = datasetId,
                    Label = image.Label,
                    Split =
                        image.Label is null ? DataSplit.Unlabeled
                        : image.Split == DataSplit.Unlabeled ? DataSplit.Unassigned
                        : image.Split,
                    SplitFixed = image.Label is not null && image.SplitFixed,
                    FileName = image.Entry,
                    Format = check.Header!.Format,
                    Width = check.Header.Width,
                    Height = check.Header.Height,
                    SizeBytes = image.Data.Length,
                    Sha256 = check.Sha256,
                    Data = image.Data,
                    WorkingCopy = check.WorkingCopy,
                };
                db.DatasetImages.Add(row);
                added.Add(row.Id);
            }
            await FlushAsync(db, cancellation);
        }
        return added;
    }

    private static async Task FlushAsync(TransferDbContext db, CancellationToken cancellation)
    {
        try
        {
            await db.SaveChangesAsync(cancellation);
        }
        catch (DbUpdateException e)
            when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            throw new DomainException(
                ErrorKind.Conflict,
                "Concurrent upload",
                "file: another upload stored the same image at the same moment; retry."
            );
        }
        // Stored rows are not needed again: release their bytes.
        db.ChangeTracker.Clear();
    }

    /// <summary>
    /// Splits the labelled images still unassigned (or all not fixed by the client) per class with the data set's
    /// shares and seed. Each of <paramref name="groups"/> goes to one split: the fixed split of a member, if one has
    /// it, else the one the splitter draws for the group.
    /// </summary>
    private static async Task AssignSplitsAsync(
        TransferDbContext db,
        Dataset dataset,
        bool onlyUnassigned,
        List<List<Guid>> groups,
        CancellationToken cancellation
    )
    {
        var rows = await db
            .DatasetImages.Where(i =>
                i.DatasetId == dataset.Id
                && i.Label != null
                && !i.SplitFixed
                && (!onlyUnassigned || i.Split == DataSplit.Unassigned)
            )
            .OrderBy(i => i.FileName)
            .ThenBy(i => i.Id)
            .Select(i => new { i.Id, i.Label })
            .ToListAsync(cancellation);
        if (rows.Count == 0)
            return;
        var groupOf = new Dictionary<Guid, int>();
        for (var g = 0; g < groups.Count; g++)
            foreach (var id in groups[g])
                groupOf[id] = g;
        var fixedSplit = new Dictionary<int, DataSplit>();
        if (groupOf.Count > 0)
        {
            var grouped = groupOf.Keys.ToList();
            foreach (
                var f in await db
                    .DatasetImages.Where(i => i.DatasetId == dataset.Id && i.SplitFixed && grouped.Contains(i.Id))
                    .OrderBy(i => i.Id)
                    .Select(i => new { i.Id, i.Split })
                    .ToListAsync(cancellation)
            )
                fixedSplit.TryAdd(groupOf[f.Id], f.Split);
        }
        var free = rows.Where(r => !(groupOf.TryGetValue(r.Id, out var g) && fixedSplit.ContainsKey(g))).ToList();
        var drawn = DataSplitter.Assign(
            free.Select(r => r.Label!).ToList(),
            new SplitFractions(dataset.ValidationFraction, dataset.TestFraction),
            dataset.SplitSeed,
            groupOf.Count == 0
                ? null
                : free.Select((r, k) => groupOf.TryGetValue(r.Id, out var g) ? g : -1 - k).ToList()
        );
        var splitOf = free.Select((r, k) => (r.Id, Split: drawn[k])).ToDictionary(p => p.Id, p => p.Split);
        foreach (var r in rows.Where(r => !splitOf.ContainsKey(r.Id)))
            splitOf[r.Id] = fixedSplit[groupOf[r.Id]];
        foreach (var split in new[] { DataSplit.Train, DataSplit.Validation, DataSplit.Test })
        {
            var ids = splitOf.Where(p => p.Value == split).Select(p => p.Key).ToList();
            if (ids.Count > 0)
                await db
                    .DatasetImages.Where(i => ids.Contains(i.Id))
                    .ExecuteUpdateAsync(s => s.SetProperty(i => i.Split, split), cancellation);
        }
    }
}
