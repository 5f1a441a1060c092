using Microsoft.EntityFrameworkCore;
using TransferApi.Persistence;
using TransferApi.Training;

namespace TransferApi.Services;

/// <summary>One class of a data set: its images, and how many of them are for training.</summary>
public sealed record ClassImages(string Label, int Images, int TrainImages);

/// <summary>
/// Whether a data set can be trained, and why not: the one rule the data set summaries show and job creation
/// enforces.
/// </summary>
public static class DatasetTrainability
{
    /// <summary>Why the data set cannot be trained yet (empty when it can), or null when there is no such data
    /// set.</summary>
    public static async Task<IReadOnlyList<string>?> ProblemsAsync(
        TransferDbContext db,
        Guid datasetId,
        int minImagesPerClass,
        CancellationToken cancellation
    )
    {
        if (!await db.Datasets.AnyAsync(d => d.Id == datasetId, cancellation))
            return null;
        var classes = await db
            .DatasetImages.Where(i => i.DatasetId == datasetId && i.Label != null)
            .GroupBy(i => i.Label!)
            .Select(g => new ClassImages(
                g.Key,
                g.Count(),
                g.Count(i => i.Split == DataSplit.Train || i.Split == DataSplit.Unassigned)
            ))
            .ToListAsync(cancellation);
        return Problems(classes, minImagesPerClass);
    }

    /// <summary>Why a data set with these classes cannot be trained yet; empty when it can.</summary>
    public static IReadOnlyList<string> Problems(IReadOnlyList<ClassImages> classes, int minImagesPerClass)
    {
        var problems = new List<string>();
        if (classes.Count < 2)
            problems.Add($"training needs at least 2 classes; the data set has {classes.Count}.");
        foreach (
            var c in classes.Where(c => c.Images < minImagesPerClass).OrderBy(c => c.Label, StringComparer.Ordinal)
        )
            problems.Add(
                $"class '{c.Label}' has {c.Images} image(s); at least {minImagesPerClass} are needed "
                    + "(10 or more recommended)."
            );
        foreach (
            var c in classes
                .Where(c => c.TrainImages == 0 && c.Images >= minImagesPerClass)
                .OrderBy(c => c.Label, StringComparer.Ordinal)
        )
            problems.Add($"class '{c.Label}' has no training images (all are in validation or test).");
        return problems;
    }
}
