using TransferApi.Training.Evaluation;
using TransferApi.Training.Heads;
using static TorchSharp.torch;

namespace TransferApi.Training.Health;

/// <summary>One image of a data set as health sees it.</summary>
/// <param name="Label">Its class; null for an unlabeled image (never in label issues or class counts).</param>
public sealed record HealthImage(string? Label, DataSplit Split);

/// <param name="Image">Index into the images given.</param>
/// <param name="Score">How unlike its nearest images it is (1 - cosine similarity to the 5th nearest).</param>
public sealed record Outlier(int Image, double Score);

public sealed record ClassCount(string Label, int Images);

/// <summary>What is wrong with a data set, found on its images' features.</summary>
/// <param name="Leakage">Near-duplicate groups whose images sit in more than one split.</param>
/// <param name="Warnings">Plain sentences with the numbers, e.g. a class under the recommended size.</param>
public sealed record HealthFindings(
    IReadOnlyList<NearDuplicateGroup> NearDuplicates,
    IReadOnlyList<NearDuplicateGroup> Leakage,
    IReadOnlyList<LabelIssue> LabelIssues,
    IReadOnlyList<string> Labels,
    IReadOnlyList<Outlier> Outliers,
    IReadOnlyList<ClassCount> ClassBalance,
    IReadOnlyList<string> Warnings
);

/// <summary>
/// A data set's health from its images' features (computed once and cached): near-duplicates and the leakage
/// they cause, label issues by confident learning on out-of-fold probabilities, outliers, class balance.
/// </summary>
public static class DatasetHealth
{
    /// <summary>Fewer images than this in a class is warned about (a head needs some examples of each).</summary>
    public const int RecommendedImagesPerClass = 10;

    /// <summary>Largest class over smallest above this is warned about.</summary>
    public const double MaxImbalance = 5;

    private const int Folds = 5;

    public static HealthFindings Analyze(
        Tensor features,
        IReadOnlyList<HealthImage> images,
        double duplicateThreshold = NearDuplicates.DefaultThreshold,
        long seed = 42,
        CancellationToken cancellation = default
    )
    {
        ArgumentOutOfRangeException.ThrowIfNotEqual(features.shape[0], images.Count);
        var duplicates = images.Count < 2 ? [] : NearDuplicates.Find(features, duplicateThreshold);
        var leakage = duplicates.Where(g => g.Images.Select(i => images[i].Split).Distinct().Count() > 1).ToList();
        var labels = images
            .Where(i => i.Label is not null)
            .Select(i => i.Label!)
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal)
            .ToList();
        var balance = labels
            .Select(l => new ClassCount(l, images.Count(i => i.Label == l)))
            .OrderByDescending(c => c.Images)
            .ThenBy(c => c.Label, StringComparer.Ordinal)
            .ToList();
        var warnings = new List<string>();
        var small = balance.Where(c => c.Images < RecommendedImagesPerClass).OrderBy(c => c.Images).ToList();
        if (small.Count is > 0 and <= 3)
            foreach (var c in small)
                warnings.Add(
                    $"Class '{c.Label}' has {c.Images} image(s); at least {RecommendedImagesPerClass} are recommended."
                );
        else if (small.Count > 3)
            warnings.Add(
                $"{small.Count} classes have fewer than the recommended {RecommendedImagesPerClass} images: "
                    + string.Join(", ", small.Select(c => $"'{c.Label}' {c.Images}"))
                    + "."
            );
        if (balance.Count >= 2 && balance[0].Images > MaxImbalance * balance[^1].Images)
            warnings.Add(
                $"Classes are imbalanced {balance[0].Images}:{balance[^1].Images} ('{balance[0].Label}' against "
                    + $"'{balance[^1].Label}'), over 1:{MaxImbalance}; consider classWeighted training or more images."
            );
        foreach (var c in balance)
        {
            var copies = duplicates.Sum(g => g.Images.Skip(1).Count(i => images[i].Label == c.Label));
            if (copies * 2 > c.Images)
                warnings.Add($"Class '{c.Label}': {copies} of its {c.Images} images are near-duplicates of others.");
        }
        var issues = FindLabelIssues(features, images, labels, seed, warnings, cancellation);
        return new HealthFindings(duplicates, leakage, issues, labels, Outliers(features), balance, warnings);
    }

    /// <summary>Confident learning on probabilities from heads that never saw the image (k folds of the labelled
    /// images' features).</summary>
    private static List<LabelIssue> FindLabelIssues(
        Tensor features,
        IReadOnlyList<HealthImage> images,
        List<string> labels,
        long seed,
        List<string> warnings,
        CancellationToken cancellation
    )
    {
        var labelled = Enumerable.Range(0, images.Count).Where(i => images[i].Label is not null).ToList();
        if (labels.Count < 2 || labelled.Count < 2 * Folds)
        {
            warnings.Add(
                $"Label issues need at least 2 classes and {2 * Folds} labelled images; the data set has "
                    + $"{labels.Count} and {labelled.Count}."
            );
            return [];
        }
        using var scope = NewDisposeScope();
        var index = labels.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => p.i, StringComparer.Ordinal);
        var given = labelled.Select(i => index[images[i].Label!]).ToList();
        var x = features.index_select(0, tensor(labelled.Select(i => (long)i).ToArray()));
        var logits = HeadTrainer.OutOfFoldLogits(
            x,
            tensor(given.Select(g => (long)g).ToArray()),
            labels.Count,
            Folds,
            FoldHeadOptions(labelled.Count, seed),
            cancellation
        );
        var rows = TensorRows.Of(nn.functional.softmax(logits, 1));
        return LabelIssues.Find(rows, given).Select(issue => issue with { Image = labelled[issue.Image] }).ToList();
    }

    /// <summary>
    /// A warning when images are tiny: shorter side under a quarter of the backbone's input, so the backbone sees
    /// them upscaled more than 4 times (a 224-pixel input: under 56 pixels), blurred past the detail its pretrained
    /// features describe. Null when none is.
    /// </summary>
    public static string? TinyImages(IReadOnlyList<(int Width, int Height)> sizes, int inputSize)
    {
        var limit = inputSize / 4;
        var tiny = sizes.Where(s => Math.Min(s.Width, s.Height) < limit).ToList();
        if (tiny.Count == 0)
            return null;
        var smallest = tiny.Min(s => Math.Min(s.Width, s.Height));
        return $"{tiny.Count} of {sizes.Count} image(s) have a side under {limit} pixels (the smallest {smallest}); "
            + $"the backbone sees {inputSize}x{inputSize}, so they are upscaled more than 4 times and lose detail.";
    }

    /// <summary>The quick heads health trains on cached features (out-of-fold, and for label suggestions without a
    /// model).</summary>
    public static TrainingOptions FoldHeadOptions(int images, long seed) =>
        new()
        {
            Epochs = 30,
            LearningRate = 0.01,
            // About 20 batches an epoch on large sets: at batches of 32 these heads took most of 10,000 images' 19-23
            // s.
            BatchSize = Math.Clamp(images / 20, 32, 1024),
            Seed = seed,
        };

    /// <summary>
    /// Images whose 5th nearest other image is far: scores beyond the upper far-out fence (third quartile plus three
    /// times the interquartile range) of the data set's own scores, most unusual first.
    /// </summary>
    private static List<Outlier> Outliers(Tensor features)
    {
        if (features.shape[0] < NoveltyModel.DefaultK + 2)
            return [];
        var scores = NoveltyModel.LeaveOneOutScores(features, NoveltyModel.DefaultK);
        var sorted = scores.Order().ToArray();
        var (q1, q3) = (sorted[sorted.Length / 4], sorted[3 * sorted.Length / 4]);
        var fence = q3 + 3 * (q3 - q1);
        return scores
            .Select((s, i) => new Outlier(i, s))
            .Where(o => o.Score > fence)
            .OrderByDescending(o => o.Score)
            .ToList();
    }
}
