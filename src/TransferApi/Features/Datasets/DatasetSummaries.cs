using Microsoft.EntityFrameworkCore;
using TransferApi.Http;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training;

namespace TransferApi.Features.Datasets;

/// <summary>The one place data set summaries (counts, statistics, trainability) are computed.</summary>
public static class DatasetSummaries
{
    public static async Task<DatasetResponse?> GetAsync(
        TransferDbContext db,
        Guid id,
        int minImagesPerClass,
        CancellationToken cancellation
    ) => (await ListAsync(db, db.Datasets.Where(d => d.Id == id), minImagesPerClass, cancellation)).SingleOrDefault();

    public static async Task<List<DatasetResponse>> ListAsync(
        TransferDbContext db,
        IQueryable<Dataset> datasets,
        int minImagesPerClass,
        CancellationToken cancellation
    )
    {
        var rows = await datasets.AsNoTracking().ToListAsync(cancellation);
        var ids = rows.Select(d => d.Id).ToList();
        var images = db.DatasetImages.Where(i => ids.Contains(i.DatasetId));
        var counts = (
            await images
                .GroupBy(i => new
                {
                    i.DatasetId,
                    i.Label,
                    i.Split,
                })
                .Select(g => new
                {
                    g.Key.DatasetId,
                    g.Key.Label,
                    g.Key.Split,
                    Count = g.Count(),
                })
                .ToListAsync(cancellation)
        ).ToLookup(c => c.DatasetId);
        var stats = await images
            .GroupBy(i => i.DatasetId)
            .Select(g => new
            {
                DatasetId = g.Key,
                MinWidth = g.Min(i => i.Width),
                MaxWidth = g.Max(i => i.Width),
                MeanWidth = g.Average(i => (double)i.Width),
                MinHeight = g.Min(i => i.Height),
                MaxHeight = g.Max(i => i.Height),
                MeanHeight = g.Average(i => (double)i.Height),
                TotalBytes = g.Sum(i => (long)i.SizeBytes),
                MeanBytes = g.Average(i => (double)i.SizeBytes),
            })
            .ToDictionaryAsync(s => s.DatasetId, cancellation);
        var health = await db
            .DatasetHealth.Where(h => ids.Contains(h.DatasetId))
            .Select(h => new
            {
                h.DatasetId,
                h.Status,
                h.Backbone,
                h.Counts,
            })
            .ToDictionaryAsync(h => h.DatasetId, cancellation);

        return rows.Select(d =>
            {
                var classes = counts[d.Id]
                    .Where(c => c.Label is not null)
                    .GroupBy(c => c.Label!)
                    .Select(g => new ClassCount(
                        g.Key,
                        g.Sum(c => c.Count),
                        g.Where(c => c.Split is DataSplit.Train or DataSplit.Unassigned).Sum(c => c.Count),
                        g.Where(c => c.Split == DataSplit.Validation).Sum(c => c.Count),
                        g.Where(c => c.Split == DataSplit.Test).Sum(c => c.Count)
                    ))
                    .OrderBy(c => c.Name, StringComparer.Ordinal)
                    .ToList();
                var s = stats.GetValueOrDefault(d.Id);
                var problems = DatasetTrainability.Problems(
                    classes.Select(c => new ClassImages(c.Name, c.ImageCount, c.Train)).ToList(),
                    minImagesPerClass
                );
                var unlabeled = counts[d.Id].Where(c => c.Label is null).Sum(c => c.Count);
                var h = health.GetValueOrDefault(d.Id);
                return new DatasetResponse(
                    d.Id,
                    d.Name,
                    d.CreatedAt,
                    classes.Sum(c => c.ImageCount) + unlabeled,
                    classes,
                    new SplitCounts(
                        classes.Sum(c => c.Train),
                        classes.Sum(c => c.Validation),
                        classes.Sum(c => c.Test),
                        unlabeled
                    ),
                    classes.Count > 0
                        ? Math.Round(classes.Max(c => c.ImageCount) / (double)classes.Min(c => c.ImageCount), 3)
                        : null,
                    s is null
                        ? null
                        : new ImageStatistics(
                            s.MinWidth,
                            s.MaxWidth,
                            Math.Round(s.MeanWidth, 1),
                            s.MinHeight,
                            s.MaxHeight,
                            Math.Round(s.MeanHeight, 1),
                            s.TotalBytes,
                            Math.Round(s.MeanBytes)
                        ),
                    new SplitSettings(d.ValidationFraction, d.TestFraction, d.SplitSeed),
                    problems.Count == 0,
                    problems,
                    d.Rejected.Select(r => new RejectedFile(r.Entry, r.Reason)).ToList(),
                    new DatasetHealthSummary(
                        h?.Status ?? HealthStatus.Pending,
                        h?.Counts is not { } report
                            || report.DatasetVersion != d.Version
                            || report.Backbone != h.Backbone,
                        h?.Counts?.ComputedAt,
                        h?.Counts?.NearDuplicateGroups,
                        h?.Counts?.LeakingGroups,
                        h?.Counts?.LabelIssues,
                        h?.Counts?.Outliers,
                        h?.Counts?.Warnings
                    )
                );
            })
            .ToList();
    }
}
