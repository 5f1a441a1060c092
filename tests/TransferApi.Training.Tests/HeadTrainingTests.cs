using TransferApi.TestSupport;
using TransferApi.Training.Checkpoints;
using TransferApi.Training.Heads;
using static TorchSharp.torch;

namespace TransferApi.Training.Tests;

[Collection(BackboneCollection.Name)]
public class HeadTrainingTests(BackboneFixture fixture)
{
    /// <summary>Two linearly separable clusters in 16 dimensions, seeded.</summary>
    private static (Tensor X, Tensor Y) Clusters(int perClass, long seed)
    {
        using var generator = new Generator((ulong)seed);
        var x = cat([randn(perClass, 16, generator: generator) + 2, randn(perClass, 16, generator: generator) - 2], 0);
        var y = cat([zeros(perClass, ScalarType.Int64), ones(perClass, ScalarType.Int64)], 0);
        return (x, y);
    }

    [Fact]
    public void Head_training_lowers_the_loss_epoch_after_epoch()
    {
        var (x, y) = Clusters(40, 1);
        var (vx, vy) = Clusters(10, 2);
        var epochs = new List<EpochMetrics>();
        using var head = HeadTrainer
            .Train(
                new HeadTrainingSet(x, y, vx, vy, 2),
                new EpochLoop(
                    new TrainingOptions
                    {
                        Epochs = 8,
                        BatchSize = 16,
                        LearningRate = 0.01,
                    },
                    epochs.Add,
                    (_, _, _) => { },
                    CancellationToken.None
                )
            )
            .Head;
        Assert.Equal(8, epochs.Count);
        Assert.True(
            epochs[^1].TrainLoss < epochs[0].TrainLoss * 0.5,
            $"loss {epochs[0].TrainLoss} -> {epochs[^1].TrainLoss}"
        );
        Assert.Equal(1.0, epochs[^1].ValAccuracy!.Value, 3);
    }

    [Fact]
    public void Frozen_backbone_parameters_receive_no_gradient_while_the_head_does()
    {
        var images = TestData
            .AntsBeesImages("train", "ants", 2)
            .Concat(TestData.AntsBeesImages("train", "bees", 2))
            .Select(File.ReadAllBytes)
            .ToList();
        using var scope = NewDisposeScope();
        var pixels = fixture.Backbone.Preprocessor.ToTensor(images);
        using var head = ClassifierHead.Create(
            new HeadSpec(HeadKind.Mlp, HiddenUnits: 16, Dropout: 0),
            fixture.Backbone.FeatureSize,
            2,
            seed: 1
        );
        // Through the network itself, with autograd on, to prove freezing holds even when gradients could flow.
        var loss = nn.functional.cross_entropy(
            head.call(fixture.Backbone.Network.call(pixels)),
            tensor(new long[] { 0, 0, 1, 1 })
        );
        loss.backward();
        Assert.All(fixture.Backbone.Network.parameters(), p => Assert.True(p.grad is null));
        Assert.All(head.parameters(), p => Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0));
    }

    [Theory]
    [InlineData(HeadKind.Linear)]
    [InlineData(HeadKind.Mlp)]
    public void Checkpoint_save_then_load_gives_identical_predictions(HeadKind kind)
    {
        var (x, y) = Clusters(20, 3);
        var spec = new HeadSpec(kind, HiddenUnits: 8);
        using var head = HeadTrainer
            .Train(
                new HeadTrainingSet(x, y, null, null, 2),
                new EpochLoop(
                    new TrainingOptions { Epochs = 3, Head = spec },
                    _ => { },
                    (_, _, _) => { },
                    CancellationToken.None
                )
            )
            .Head;
        var checkpoint = ModelCheckpoint.FromHead(
            "resnet18-imagenet",
            Imaging.PreprocessingSpec.CntkResNet,
            ["a", "b"],
            16,
            spec,
            head
        );
        using var restored = checkpoint.LoadHead();
        using var features = randn(7, 16);
        using var before = head.call(features);
        using var after = restored.call(features);
        Assert.Equal(before.data<float>().ToArray(), after.data<float>().ToArray());
    }

    [Fact]
    public void Trainer_runs_the_backbone_once_per_image_and_reports_progress_to_100_percent()
    {
        var images = LabeledPhotos.AntsAndBees(6);
        var observer = new RecordingObserver();
        var options = new TrainingOptions
        {
            Epochs = 4,
            BatchSize = 4,
            FeatureBatchSize = 5,
            ValidationFraction = 0.25,
            LearningRate = 0.01,
        };
        var result = new TransferLearningTrainer(fixture.Backbone).Train(
            images,
            options,
            observer,
            CancellationToken.None
        );

        Assert.Equal(12, result.Timings.ImagesEmbedded);
        Assert.Equal(3, observer.Progress.Count(p => p.Stage == TrainingStage.ExtractingFeatures && p.Batch > 0));
        Assert.Equal([1, 2, 3, 4], observer.Epochs.Select(e => e.Epoch));
        Assert.All(observer.Epochs, e => Assert.NotNull(e.ValAccuracy));
        Assert.Equal(["ants", "bees"], result.Checkpoint.Labels);
        Assert.Equal(("validation", 4), (result.Report!.Split, result.Report.Images));
        // 4 validation and 8 training images are too few to calibrate on either: the temperature stays 1.
        Assert.Null(result.Calibration);
        Assert.Equal(1, result.Checkpoint.Temperature);
        var percents = observer.Progress.Select(p => p.Percent).ToList();
        Assert.Equal(percents.Order(), percents);
        Assert.Equal(100, percents[^1]);
    }

    [Fact]
    public void Cached_features_skip_the_backbone_and_train_the_same_head()
    {
        var images = LabeledPhotos.AntsAndBees(4, withContentKeys: true);
        var options = new TrainingOptions
        {
            Epochs = 3,
            BatchSize = 4,
            ValidationFraction = 0.25,
        };
        var trainer = new TransferLearningTrainer(fixture.Backbone);
        var first = new RecordingObserver();
        var fresh = trainer.Train(images, options, first, CancellationToken.None);
        Assert.Equal(8, first.Computed.Count);

        // Second run: every image comes with its cached features and no bytes at all, so the backbone cannot run.
        var cached = images
            .Select(i =>
                i with
                {
                    Bytes = [],
                    Features = first.Computed.Single(c => c.ContentKey == i.ContentKey).Features,
                }
            )
            .ToList();
        var second = new RecordingObserver();
        var reused = trainer.Train(cached, options, second, CancellationToken.None);

        Assert.Empty(second.Computed);
        Assert.Equal((0, 8), (reused.Timings.ImagesEmbedded, reused.Timings.FeaturesFromCache));
        Assert.DoesNotContain(second.Progress, p => p.Stage == TrainingStage.ExtractingFeatures && p.Batch > 0);
        Assert.Equal(fresh.Metrics.Select(m => m.ValLoss), reused.Metrics.Select(m => m.ValLoss));
        Assert.Equal(fresh.Checkpoint.HeadWeights, reused.Checkpoint.HeadWeights);
    }

    [Fact]
    public void The_same_images_options_and_seed_give_the_same_metrics()
    {
        var images = LabeledPhotos.AntsAndBees(6);
        var options = new TrainingOptions
        {
            Epochs = 6,
            BatchSize = 4,
            ValidationFraction = 0.25,
            Seed = 11,
            Head = new HeadSpec(HeadKind.Mlp, 32, 0.3),
            Optimizer = OptimizerKind.AdamW,
            WeightDecay = 0.01,
            Schedule = LrSchedule.Cosine,
            LabelSmoothing = 0.1,
        };
        var trainer = new TransferLearningTrainer(fixture.Backbone);
        var first = trainer.Train(images, options, new RecordingObserver(), CancellationToken.None);
        var second = trainer.Train(images, options, new RecordingObserver(), CancellationToken.None);
        var reseeded = trainer.Train(
            images,
            options with
            {
                Seed = 12,
            },
            new RecordingObserver(),
            CancellationToken.None
        );

        foreach (var (a, b) in first.Metrics.Zip(second.Metrics))
        {
            Assert.Equal(a.TrainLoss, b.TrainLoss, 1e-6);
            Assert.Equal(a.ValLoss!.Value, b.ValLoss!.Value, 1e-6);
            Assert.Equal(a.ValAccuracy!.Value, b.ValAccuracy!.Value, 1e-6);
        }
        Assert.NotEqual(first.Metrics.Select(m => m.TrainLoss), reseeded.Metrics.Select(m => m.TrainLoss));
    }

    [Fact]
    public void Trainer_refuses_a_single_class()
    {
        var images = TestData
            .AntsBeesImages("train", "ants", 3)
            .Select(p => new LabeledImage("ants", DataSplit.Unassigned, File.ReadAllBytes(p)))
            .ToList();
        var error = Assert.Throws<TrainingInputException>(() =>
            new TransferLearningTrainer(fixture.Backbone).Train(
                images,
                new TrainingOptions(),
                new RecordingObserver(),
                CancellationToken.None
            )
        );
        Assert.Contains("at least 2 classes", error.Message);
    }
}
