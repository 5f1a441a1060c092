using TransferApi.TestSupport;

namespace TransferApi.Training.Tests;

/// <summary>Real ants-bees photos as the training core's input.</summary>
internal static class LabeledPhotos
{
    /// <summary>The first <paramref name="perClass"/> photos of each class in <paramref name="folder"/>, ants first,
    /// all in <paramref name="split"/>.</summary>
    public static List<LabeledImage> AntsAndBees(
        int perClass,
        DataSplit split = DataSplit.Unassigned,
        string folder = "train",
        bool withContentKeys = false
    ) =>
        new[] { "ants", "bees" }
            .SelectMany(label =>
                TestData
                    .AntsBeesImages(folder, label, perClass)
                    .Select(path => new LabeledImage(
                        label,
                        split,
                        File.ReadAllBytes(path),
                        withContentKeys ? path : null
                    ))
            )
            .ToList();
}
