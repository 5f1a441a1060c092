using System.Diagnostics;
using TransferApi.TestSupport;
using TransferApi.Training;
using TransferApi.Training.Backbones;
using TransferApi.Training.Checkpoints;

namespace TransferApi.Benchmarks;

/// <summary>
/// What a training job costs against one feature-extraction pass, what a second job on the same images costs
/// against the first (feature cache), and the quality of the defaults on ants-bees (train on train/, score on val/).
/// </summary>
internal static class TrainingBenchmark
{
    public static void Run()
    {
        TorchRuntime.SetThreads(Environment.ProcessorCount);
        using var backbone = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);
        var images = AntsBees();
        var trainer = new TransferLearningTrainer(backbone);
        var observer = new RecordingObserver();

        var pass = Stopwatch.StartNew();
        using (
            trainer.ExtractFeatures(
                images.Select(i => i.Bytes).ToList(),
                new TrainingOptions(),
                observer,
                CancellationToken.None
            )
        ) { }
        var extraction = pass.Elapsed.TotalSeconds;

        var options = new TrainingOptions { Epochs = 20 };
        var clock = Stopwatch.StartNew();
        var first = trainer.Train(images, options, observer, CancellationToken.None);
        var firstSeconds = clock.Elapsed.TotalSeconds;

        var cached = images
            .Select(i =>
                i with
                {
                    Bytes = [],
                    Features = observer.Computed.Single(c => c.ContentKey == i.ContentKey).Features,
                }
            )
            .ToList();
        clock.Restart();
        var second = trainer.Train(cached, options with { Seed = 7 }, new RecordingObserver(), CancellationToken.None);
        var secondSeconds = clock.Elapsed.TotalSeconds;

        Console.WriteLine(
            $"one feature-extraction pass over {images.Count} images: {extraction:F2} s "
                + $"({images.Count / extraction:F1} images/s)"
        );
        Console.WriteLine(
            $"20-epoch frozen-backbone job: {firstSeconds:F2} s = {firstSeconds / extraction:F2}x the pass (target <= "
                + $"1.3x); head {first.Timings.HeadTraining.TotalSeconds:F3} s"
        );
        Console.WriteLine(
            $"second job on the same images (cached features): {secondSeconds:F3} s = "
                + $"{secondSeconds / firstSeconds:F3}x the first (target <= 0.2x)"
        );

        Console.WriteLine("quality on ants-bees (train on train/ 244, score on val/ 153):");
        foreach (
            var (name, recipe) in new (string, TrainingOptions)[]
            {
                ("defaults (linear, Adam 1e-3, 10 epochs)", new TrainingOptions()),
                (
                    "linear, AdamW 1e-3 wd 0.01, 30 epochs, cosine",
                    new TrainingOptions
                    {
                        Epochs = 30,
                        Optimizer = OptimizerKind.AdamW,
                        WeightDecay = 0.01,
                        Schedule = LrSchedule.Cosine,
                    }
                ),
                (
                    "linear, SGD 0.01 momentum 0.9, 30 epochs, cosine",
                    new TrainingOptions
                    {
                        Epochs = 30,
                        Optimizer = OptimizerKind.Sgd,
                        LearningRate = 0.01,
                        Schedule = LrSchedule.Cosine,
                    }
                ),
                (
                    "MLP 256 dropout 0.2, Adam 1e-3, 20 epochs",
                    new TrainingOptions { Epochs = 20, Head = new HeadSpec(HeadKind.Mlp) }
                ),
                ("defaults + fine-tune last stage (5 epochs, lr/10)", new TrainingOptions { UnfreezeStages = 1 }),
            }
        )
        {
            // Fine-tuning needs pixels (its activations are not cached), the frozen recipes reuse the cached features.
            clock.Restart();
            var result = trainer.Train(
                recipe.UnfreezeStages > 0 ? images : cached,
                recipe,
                new RecordingObserver(),
                CancellationToken.None
            );
            Console.WriteLine(
                $"  {name, -52} val accuracy {result.Report!.Accuracy:P1}, macro F1 {result.Report.MacroF1:F3}, log "
                    + $"loss {result.Report.LogLoss:F3}"
                    + (
                        recipe.UnfreezeStages > 0
                            ? $", stages kept {result.FineTuned}, {clock.Elapsed.TotalSeconds:F0} s"
                            : ""
                    )
            );
        }
    }

    /// <summary>Every ants-bees photo, train/ as training and val/ as validation images, keyed by path.</summary>
    public static List<LabeledImage> AntsBees() =>
        (
            from split in new[] { "train", "val" }
            from label in new[] { "ants", "bees" }
            from path in TestData.AntsBeesImages(split, label)
            select new LabeledImage(
                label,
                split == "train" ? DataSplit.Train : DataSplit.Validation,
                File.ReadAllBytes(path),
                path
            )
        ).ToList();

    private sealed class RecordingObserver : ITrainingObserver
    {
        public List<ComputedFeatures> Computed { get; } = [];

        public void OnProgress(TrainingProgress progress) { }

        public void OnEpochCompleted(EpochMetrics metrics) { }

        public void OnFeaturesComputed(IReadOnlyList<ComputedFeatures> features) => Computed.AddRange(features);

        // Built every epoch as in the service (that cost is measured); storing it is the host's business.
        public void OnCheckpoint(TrainingCheckpoint checkpoint) { }
    }
}
