using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using TransferApi.TestSupport;
using TransferApi.Training;
using TransferApi.Training.Backbones;
using TransferApi.Training.Checkpoints;
using TransferApi.Training.Health;
using static TorchSharp.torch;

namespace TransferApi.Benchmarks;

/// <summary>
/// Issue 15's near-duplicate threshold, measured: how similar (cosine, ResNet18 features) generated copies of real
/// photos stay to their originals, and how similar distinct photos of the shared data sets get, so the threshold
/// can sit between them.
/// </summary>
internal static class HealthBenchmark
{
    private static readonly (string Name, Func<Image<Rgb24>, byte[]> Make)[] Variants =
    [
        ("resized to 50 %", image => Jpeg(image, x => x.Resize(image.Width / 2, image.Height / 2), 90)),
        ("re-encoded JPEG quality 40", image => Jpeg(image, _ => { }, 40)),
        ("cropped to 90 % (centre)", image => Jpeg(image, x => x.Crop(Centre(image, 0.9)), 90)),
        ("cropped to 80 % (corner)", image =>
            Jpeg(image, x => x.Crop(new Rectangle(0, 0, image.Width * 4 / 5, image.Height * 4 / 5)), 90)
        ),
        ("mirrored", image => Jpeg(image, x => x.Flip(FlipMode.Horizontal), 90)),
        ("resized 75 %, JPEG 60, cropped 95 %", image =>
            Jpeg(image, x => x.Crop(Centre(image, 0.95)).Resize(image.Width * 3 / 4, 0), 60)
        ),
        ("brightened 20 %", image => Jpeg(image, x => x.Brightness(1.2f), 90)),
    ];

    public static void Run()
    {
        TorchRuntime.SetThreads(Environment.ProcessorCount);
        using var backbone = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);
        var photos = Directory
            .EnumerateFiles(TestData.AntsBees, "*.jpg", SearchOption.AllDirectories)
            .Concat(
                Directory.EnumerateFiles(
                    Path.Combine(TestData.DatasetsRoot, "pets"),
                    "*.jpg",
                    SearchOption.AllDirectories
                )
            )
            .Order(StringComparer.Ordinal)
            .ToList();
        var originals = photos.Select(File.ReadAllBytes).ToList();
        using var features = Features(backbone, originals);
        using var unit = nn.functional.normalize(features, p: 2, dim: 1);

        // Distinct photos: every pair's similarity above the candidate thresholds.
        using var similarity = unit.matmul(unit.t()).triu(1);
        var thresholds = new[] { 0.85, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98 };
        Console.WriteLine(
            $"{photos.Count} distinct photos (ants-bees and pets), {(long)photos.Count * (photos.Count - 1) / 2} pairs:"
        );
        foreach (var t in thresholds)
        {
            var pairs = similarity.ge(t).sum().item<long>();
            var groups = NearDuplicates.Find(features, t);
            var grouped = groups.Sum(g => g.Images.Count);
            Console.WriteLine($"  threshold {t:F2}: {pairs} pairs above, {groups.Count} groups of {grouped} photos");
        }
        var top = similarity.flatten().topk(5);
        var values = top.values.data<float>().ToArray();
        var indices = top.indexes.data<long>().ToArray();
        for (var k = 0; k < values.Length; k++)
        {
            var (a, b) = (photos[(int)(indices[k] / photos.Count)], photos[(int)(indices[k] % photos.Count)]);
            Console.WriteLine(
                $"  most similar pair {k + 1}: {values[k]:F3} {Path.GetFileName(a)} ~ {Path.GetFileName(b)}"
            );
        }

        LabelIssueQuality(photos, features);
        Timing(backbone, photos, originals);

        // Copies: every 4th photo through each variant.
        var sample = Enumerable.Range(0, photos.Count).Where(i => i % 4 == 0).ToList();
        Console.WriteLine(
            $"copies of {sample.Count} photos, similarity to the original (min / 5th percentile / median), recall:"
        );
        foreach (var (name, make) in Variants)
        {
            var copies = sample
                .Select(i =>
                {
                    using var image = Image.Load<Rgb24>(originals[i]);
                    return make(image);
                })
                .ToList();
            using var copyFeatures = Features(backbone, copies);
            using var copyUnit = nn.functional.normalize(copyFeatures, p: 2, dim: 1);
            using var own = (copyUnit * unit.index_select(0, tensor(sample.Select(i => (long)i).ToArray()))).sum(1);
            var scores = own.data<float>().ToArray().Order().ToArray();
            var recall = string.Join(
                " ",
                thresholds.Select(t => $"{t:F2}:{scores.Count(s => s >= t) / (double)scores.Length:P0}")
            );
            var (lowest, fifth, median) = (scores[0], scores[scores.Length / 20], scores[scores.Length / 2]);
            Console.WriteLine($"  {name, -36} {lowest:F3} / {fifth:F3} / {median:F3}  {recall}");
        }
    }

    /// <summary>Precision and recall of the label issues with 5 % of the labels flipped on purpose.</summary>
    private static void LabelIssueQuality(List<string> photos, Tensor features)
    {
        var sets = new (string Name, Func<string, string?> LabelOf)[]
        {
            ("ants-bees", path => path.Contains("/ants-bees/") ? Path.GetFileName(Path.GetDirectoryName(path)) : null),
            ("cats vs dogs", path => path.Contains("/pets/") ? Path.GetFileName(Path.GetDirectoryName(path)) : null),
            ("37 breeds", path =>
                path.Contains("/pets/")
                    ? Path.GetFileNameWithoutExtension(path)[..Path.GetFileNameWithoutExtension(path).LastIndexOf('_')]
                    : null
            ),
        };
        Console.WriteLine("label issues with 5 % of labels flipped (seeded), all images as training images:");
        foreach (var (name, labelOf) in sets)
        {
            var members = Enumerable.Range(0, photos.Count).Where(i => labelOf(photos[i]) is not null).ToList();
            var truth = members.Select(i => labelOf(photos[i])!).ToList();
            var classes = truth.Distinct().Order(StringComparer.Ordinal).ToList();
            var random = new Random(15);
            var flipped = random
                .GetItems(Enumerable.Range(0, members.Count).ToArray(), members.Count / 20)
                .Distinct()
                .ToHashSet();
            var given = truth
                .Select(
                    (label, n) =>
                        flipped.Contains(n)
                            ? classes.Where(c => c != label).ElementAt(random.Next(classes.Count - 1))
                            : label
                )
                .ToList();
            using var x = features.index_select(0, tensor(members.Select(i => (long)i).ToArray()));
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var health = DatasetHealth.Analyze(x, given.Select(l => new HealthImage(l, DataSplit.Train)).ToList());
            var found = health.LabelIssues.Select(i => i.Image).ToHashSet();
            var hits = found.Count(flipped.Contains);
            var suggested = health.LabelIssues.Count(i =>
                flipped.Contains(i.Image) && health.Labels[i.SuggestedLabel] == truth[i.Image]
            );
            Console.WriteLine(
                $"  {name, -13} {members.Count} images, {classes.Count} classes, {flipped.Count} flipped: "
                    + $"{found.Count} issues, precision {hits / (double)Math.Max(1, found.Count):P0}, recall "
                    + $"{hits / (double)flipped.Count:P0}, true label suggested for {suggested} of {hits}; "
                    + $"{clock.Elapsed.TotalSeconds:F1} s"
            );
        }
    }

    /// <summary>Health of ants-bees from pixels (cold cache) and from cached features, and of 10,000 generated
    /// images' features.</summary>
    private static void Timing(Backbone backbone, List<string> photos, List<byte[]> originals)
    {
        var members = Enumerable.Range(0, photos.Count).Where(i => photos[i].Contains("/ants-bees/")).ToList();
        var images = members
            .Select(i => new HealthImage(Path.GetFileName(Path.GetDirectoryName(photos[i])), DataSplit.Train))
            .ToList();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var cold = Features(backbone, members.Select(i => originals[i]).ToList());
        var extraction = clock.Elapsed;
        DatasetHealth.Analyze(cold, images);
        var total = clock.Elapsed;
        clock.Restart();
        DatasetHealth.Analyze(cold, images);
        Console.WriteLine(
            $"health of ants-bees ({members.Count} images): cold cache {total.TotalSeconds:F1} s (backbone "
                + $"{extraction.TotalSeconds:F1} s), warm cache {clock.Elapsed.TotalSeconds:F2} s"
        );
        manual_seed(3);
        using var centres = randn(20, 512) * 2;
        using var generated = centres.index_select(0, arange(10_000) % 20) + randn(10_000, 512);
        var generatedImages = Enumerable
            .Range(0, 10_000)
            .Select(i => new HealthImage($"class{i % 20}", DataSplit.Train))
            .ToList();
        clock.Restart();
        var health = DatasetHealth.Analyze(generated, generatedImages);
        Console.WriteLine(
            $"health of 10,000 generated images (512 features, 20 classes): {clock.Elapsed.TotalSeconds:F1} s, "
                + $"{health.NearDuplicates.Count} near-duplicate groups, {health.LabelIssues.Count} label issues, "
                + $"{health.Outliers.Count} outliers"
        );
    }

    private static Rectangle Centre(Image image, double share)
    {
        var (width, height) = ((int)(image.Width * share), (int)(image.Height * share));
        return new Rectangle((image.Width - width) / 2, (image.Height - height) / 2, width, height);
    }

    private static byte[] Jpeg(Image<Rgb24> image, Action<IImageProcessingContext> change, int quality)
    {
        using var copy = image.Clone(change);
        using var buffer = new MemoryStream();
        copy.SaveAsJpeg(buffer, new JpegEncoder { Quality = quality });
        return buffer.ToArray();
    }

    private static Tensor Features(Backbone backbone, IReadOnlyList<byte[]> images) =>
        new TransferLearningTrainer(backbone).ExtractFeatures(
            images,
            new TrainingOptions(),
            new NullObserver(),
            CancellationToken.None
        );
}
