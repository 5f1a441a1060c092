using TransferApi.Training.FineTuning;
using TransferApi.Training.Imaging;

namespace TransferApi.Training.Tests;

/// <summary>Fine-tuning within a memory budget: activations beyond it are spilled or recomputed, and training is the
/// same.</summary>
[Collection(BackboneCollection.Name)]
public class ActivationBudgetTests(BackboneFixture fixture)
{
    // Two stages (0.4 MB per image), an augmented view per training image, validation and test images: every kind of
    // row.
    private static readonly TrainingOptions Options = new()
    {
        Epochs = 2,
        BatchSize = 4,
        FeatureBatchSize = 5,
        ValidationFraction = 0.25,
        UnfreezeStages = 2,
        FineTuneEpochs = 2,
        LearningRate = 0.01,
        Augmentation = new AugmentationOptions { Views = 1 },
    };

    private static List<LabeledImage> Images()
    {
        var images = LabeledPhotos.AntsAndBees(6);
        // Two images per class held out as the test split.
        return images.Select((image, k) => k % 6 == 5 ? image with { Split = DataSplit.Test } : image).ToList();
    }

    [Theory]
    [InlineData(ActivationOverflow.Spill, ActivationStorage.Spilled)]
    [InlineData(ActivationOverflow.Recompute, ActivationStorage.Recomputed)]
    public void Fine_tuning_beyond_the_budget_trains_as_it_does_in_memory(
        ActivationOverflow overflow,
        ActivationStorage expected
    )
    {
        var images = Images();
        var trainer = new TransferLearningTrainer(fixture.Backbone);
        var unbounded = trainer.Train(images, Options, new RecordingObserver(), CancellationToken.None);

        var spillDirectory = Directory.CreateTempSubdirectory("activations-").FullName;
        var source = new RecordingSource(images);
        var observer = new RecordingObserver();
        var budget = new ActivationBudget(MemoryBytes: 1 << 20, overflow, spillDirectory);
        var bounded = trainer.Train(
            images,
            Options,
            observer,
            CancellationToken.None,
            source: source,
            activationBudget: budget
        );

        Assert.Equal(ActivationStorage.Memory, unbounded.Activations!.Storage);
        // 8 train + 8 views + 2 validation + 2 test rows of 128 x 28 x 28 floats.
        Assert.Equal(20L * 128 * 28 * 28 * 4, unbounded.Activations.Bytes);
        Assert.Equal(new ActivationUsage(expected, unbounded.Activations.Bytes, 1 << 20), bounded.Activations);
        Assert.Equal([bounded.Activations!], observer.Activations);
        Assert.Equal(unbounded.Metrics.Select(m => m.Epoch), bounded.Metrics.Select(m => m.Epoch));
        foreach (var (memory, budgeted) in unbounded.Metrics.Zip(bounded.Metrics))
        {
            Assert.Equal(memory.TrainLoss, budgeted.TrainLoss, 1e-5);
            Assert.Equal(memory.ValLoss!.Value, budgeted.ValLoss!.Value, 1e-5);
            Assert.Equal(memory.ValAccuracy!.Value, budgeted.ValAccuracy!.Value, 1e-6);
        }
        Assert.Equal((unbounded.BestEpoch, unbounded.FineTuned), (bounded.BestEpoch, bounded.FineTuned));
        Assert.Equal(unbounded.Report!.Accuracy, bounded.Report!.Accuracy);
        // Bytes were read a batch at a time, never the whole data set at once; the spill file is gone.
        Assert.All(source.BatchSizes, size =>
            Assert.InRange(size, 1, Math.Max(Options.FeatureBatchSize, Options.BatchSize))
        );
        Assert.Empty(Directory.GetFiles(spillDirectory));
        Directory.Delete(spillDirectory);
    }

    [Fact]
    public void A_frozen_backbone_job_reads_only_the_images_without_cached_features()
    {
        var images = LabeledPhotos.AntsAndBees(4, withContentKeys: true);
        var trainer = new TransferLearningTrainer(fixture.Backbone);
        var options = new TrainingOptions { Epochs = 1, FeatureBatchSize = 3 };
        var first = new RecordingObserver();
        trainer.Train(images, options, first, CancellationToken.None);
        var cached = first.Computed.ToDictionary(c => c.ContentKey, c => c.Features);
        var half = images
            .Select((image, k) => k % 2 == 0 ? image with { Features = cached[image.ContentKey!] } : image)
            .ToList();

        var source = new RecordingSource(half);
        var result = trainer.Train(half, options, new RecordingObserver(), CancellationToken.None, source: source);

        Assert.Null(result.Activations);
        Assert.Equal(4, source.BatchSizes.Sum());
        Assert.All(source.BatchSizes, size => Assert.InRange(size, 1, 3));
    }

    [Fact]
    public void Extraction_for_fine_tuning_keeps_no_tensors_of_finished_batches_but_their_pooled_features()
    {
        // Each batch's tail pass leaves a few intermediate tensors (megabytes each); kept until the job ends, they grew
        // a
        // 10,000-image job to 6.5 GB. Only the pooled features of each batch (one tensor) may stay.
        var live = new List<long>();
        var observer = new RecordingObserver(p =>
        {
            if (p.Stage == TrainingStage.ExtractingFeatures && p.Batch > 0)
                live.Add(TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        });
        var options = Options with { Augmentation = AugmentationOptions.None, FeatureBatchSize = 2 };
        new TransferLearningTrainer(fixture.Backbone).Train(Images(), options, observer, CancellationToken.None);

        Assert.Equal(6, live.Count);
        Assert.All(live.Zip(live.Skip(1)), pair => Assert.InRange(pair.Second - pair.First, 0, 1));
    }

    /// <summary>Serves bytes like the service's database source and records how many it handed out at once.</summary>
    private sealed class RecordingSource(IReadOnlyList<LabeledImage> all) : IImageSource
    {
        public List<int> BatchSizes { get; } = [];

        public IEnumerable<IReadOnlyList<byte[]>> Batches(
            IReadOnlyList<int> images,
            int batchSize,
            CancellationToken cancellation
        )
        {
            foreach (
                var batch in new InMemoryImageSource(all.Select(i => i.Bytes).ToList()).Batches(
                    images,
                    batchSize,
                    cancellation
                )
            )
            {
                BatchSizes.Add(batch.Count);
                yield return batch;
            }
        }
    }
}
