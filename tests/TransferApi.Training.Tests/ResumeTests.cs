using TransferApi.Training.Checkpoints;
using TransferApi.Training.Heads;
using static TorchSharp.torch;

namespace TransferApi.Training.Tests;

/// <summary>
/// A job that resumes from the checkpoint of any completed epoch ends exactly where the uninterrupted job
/// ends: same metrics, same weights, same kept epoch. Checkpoints go through their byte form, as in storage.
/// </summary>
[Collection(BackboneCollection.Name)]
public class ResumeTests(BackboneFixture fixture)
{
    public static TheoryData<string> HeadRecipes => ["mlp-adamw-onecycle", "sgd-step-earlystop", "linear-adam-cosine"];

    private static TrainingOptions Recipe(string name) =>
        name switch
        {
            "mlp-adamw-onecycle" => new TrainingOptions
            {
                Epochs = 6,
                BatchSize = 8,
                LearningRate = 0.01,
                Head = new HeadSpec(HeadKind.Mlp, 32, 0.3),
                Optimizer = OptimizerKind.AdamW,
                WeightDecay = 0.01,
                Schedule = LrSchedule.OneCycle,
                LabelSmoothing = 0.1,
                ClassWeighted = true,
            },
            "sgd-step-earlystop" => new TrainingOptions
            {
                Epochs = 12,
                BatchSize = 8,
                LearningRate = 0.05,
                Optimizer = OptimizerKind.Sgd,
                Schedule = LrSchedule.Step,
                StepEpochs = 2,
                StepGamma = 0.5,
                EarlyStopping = new EarlyStopping(MonitoredMetric.ValLoss, Patience: 2, MinDelta: 0.05),
            },
            _ => new TrainingOptions
            {
                Epochs = 6,
                BatchSize = 8,
                LearningRate = 0.01,
                Schedule = LrSchedule.Cosine,
            },
        };

    private static (Tensor X, Tensor Y, Tensor VX, Tensor VY) Data()
    {
        using var generator = new Generator(7);
        var x = randn(60, 16, generator: generator);
        var y = x[.., 0].add(x[.., 1].mul(0.5)).add(randn(60, generator: generator)).gt(0).to_type(ScalarType.Int64);
        var vx = randn(30, 16, generator: generator);
        var vy = vx[.., 0].add(vx[.., 1].mul(0.5)).add(randn(30, generator: generator)).gt(0).to_type(ScalarType.Int64);
        return (x, y, vx, vy);
    }

    private static TrainingCheckpoint ThroughStorage(TrainingCheckpoint checkpoint) =>
        TrainingCheckpoint.FromBytes(checkpoint.ToBytes());

    [Theory]
    [MemberData(nameof(HeadRecipes))]
    public void Resuming_the_head_phase_after_any_epoch_reproduces_the_uninterrupted_run(string recipe)
    {
        var options = Recipe(recipe);
        var (x, y, vx, vy) = Data();
        var checkpoints = new List<TrainingCheckpoint>();
        var full = HeadTrainer.Train(
            new HeadTrainingSet(x, y, vx, vy, 2),
            new EpochLoop(
                options,
                _ => { },
                (_, _, _) => { },
                CancellationToken.None,
                Checkpoints: new CheckpointSink(() => true, checkpoints.Add)
            )
        );
        Assert.Equal(checkpoints.Count, full.Metrics.Count);
        Assert.Equal(checkpoints.Select(c => c.Epoch), full.Metrics.Select(m => m.Epoch));
        if (recipe == "sgd-step-earlystop")
            Assert.True(
                full.StoppedEarly && full.BestEpoch < full.Metrics.Count,
                "this recipe must exercise early stopping's restore"
            );

        foreach (var checkpoint in checkpoints.Take(checkpoints.Count - 1))
        {
            AssertSameResult(
                full,
                HeadTrainer.Train(
                    new HeadTrainingSet(x, y, vx, vy, 2),
                    new EpochLoop(
                        options,
                        _ => { },
                        (_, _, _) => { },
                        CancellationToken.None,
                        ThroughStorage(checkpoint)
                    )
                )
            );
        }
        full.Head.Dispose();
    }

    [Fact]
    public void Resuming_during_fine_tuning_or_just_before_it_reproduces_the_uninterrupted_run()
    {
        var images = LabeledPhotos.AntsAndBees(6);
        var options = new TrainingOptions
        {
            Epochs = 2,
            BatchSize = 4,
            LearningRate = 0.01,
            ValidationFraction = 0.34,
            UnfreezeStages = 1,
            FineTuneEpochs = 3,
            FineTuneLrFactor = 2,
        };
        var trainer = new TransferLearningTrainer(fixture.Backbone);
        var observer = new RecordingObserver();
        var full = trainer.Train(images, options, observer, CancellationToken.None);
        Assert.Equal([1, 2, 3, 4, 5], observer.Checkpoints.Select(c => c.Epoch));
        Assert.Equal(
            [
                TrainingPhase.Head,
                TrainingPhase.Head,
                TrainingPhase.FineTuning,
                TrainingPhase.FineTuning,
                TrainingPhase.FineTuning,
            ],
            observer.Checkpoints.Select(c => c.Phase)
        );
        // Fine-tuning checkpoints are complete: all metrics so far and the tail's weights.
        Assert.Equal([1, 2, 3, 4], observer.Checkpoints[3].Metrics.Select(m => m.Epoch));
        Assert.NotNull(observer.Checkpoints[3].TailWeights);

        foreach (var after in new[] { 2, 4 })
        {
            var resumedObserver = new RecordingObserver();
            var resumed = trainer.Train(
                images,
                options,
                resumedObserver,
                CancellationToken.None,
                ThroughStorage(observer.Checkpoints[after - 1])
            );
            AssertSameResult(full, resumed);
            Assert.Equal(Enumerable.Range(after + 1, 5 - after), resumedObserver.Epochs.Select(m => m.Epoch));
        }
    }

    [Theory]
    [MemberData(nameof(HeadRecipes))]
    public void A_head_phase_stopped_between_batches_checkpoints_there_and_resumes_to_the_uninterrupted_result(
        string recipe
    )
    {
        var options = Recipe(recipe);
        var (x, y, vx, vy) = Data();
        var full = HeadTrainer.Train(
            new HeadTrainingSet(x, y, vx, vy, 2),
            new EpochLoop(options, _ => { }, (_, _, _) => { }, CancellationToken.None)
        );

        // 60 rows in batches of 8: 8 batches an epoch. Stop in the first epoch (no model yet) and in a later one.
        foreach (var (epoch, batch) in new[] { (1, 3), (2, 5) })
        {
            using var stop = new CancellationTokenSource();
            var checkpoints = new List<TrainingCheckpoint>();
            try
            {
                var stopped = HeadTrainer.Train(
                    new HeadTrainingSet(x, y, vx, vy, 2),
                    new EpochLoop(
                        options,
                        _ => { },
                        (e, b, _) =>
                        {
                            if ((e, b) == (epoch, batch))
                                stop.Cancel();
                        },
                        stop.Token,
                        Checkpoints: new CheckpointSink(() => true, checkpoints.Add)
                    )
                );
                Assert.True(stopped.Interrupted);
                stopped.Head.Dispose();
            }
            catch (OperationCanceledException) when (epoch == 1)
            {
                // cancelled before any epoch completed: no model, but the checkpoint was reported
            }
            var last = checkpoints[^1];
            Assert.Equal((epoch - 1, batch), (last.Epoch, last.InProgress?.BatchesDone));

            AssertSameResult(
                full,
                HeadTrainer.Train(
                    new HeadTrainingSet(x, y, vx, vy, 2),
                    new EpochLoop(options, _ => { }, (_, _, _) => { }, CancellationToken.None, ThroughStorage(last))
                )
            );
        }
        full.Head.Dispose();
    }

    [Fact]
    public void A_checkpoint_due_mid_epoch_pauses_the_epoch_there_and_changes_nothing()
    {
        var options = Recipe("linear-adam-cosine");
        var (x, y, vx, vy) = Data();
        var full = HeadTrainer.Train(
            new HeadTrainingSet(x, y, vx, vy, 2),
            new EpochLoop(options, _ => { }, (_, _, _) => { }, CancellationToken.None)
        );

        // The worker wants one at most every Worker:CheckpointInterval: here once, after batch 4 of epoch 2 (of 8).
        var due = false;
        var checkpoints = new List<TrainingCheckpoint>();
        var run = HeadTrainer.Train(
            new HeadTrainingSet(x, y, vx, vy, 2),
            new EpochLoop(
                options,
                _ => { },
                (e, b, _) => due = (e, b) == (2, 4),
                CancellationToken.None,
                Checkpoints: new CheckpointSink(
                    () => due,
                    c =>
                    {
                        checkpoints.Add(c);
                        due = false;
                    },
                    () => due
                )
            )
        );
        var taken = Assert.Single(checkpoints);
        Assert.Equal((1, 4), (taken.Epoch, taken.InProgress?.BatchesDone));
        AssertSameResult(full, run);
        AssertSameResult(
            full,
            HeadTrainer.Train(
                new HeadTrainingSet(x, y, vx, vy, 2),
                new EpochLoop(options, _ => { }, (_, _, _) => { }, CancellationToken.None, ThroughStorage(taken))
            )
        );
        full.Head.Dispose();
    }

    [Fact]
    public void A_stop_always_checkpoints_even_when_none_is_due_and_even_at_an_epoch_boundary()
    {
        var options = Recipe("linear-adam-cosine");
        var (x, y, vx, vy) = Data();
        var full = HeadTrainer.Train(
            new HeadTrainingSet(x, y, vx, vy, 2),
            new EpochLoop(options, _ => { }, (_, _, _) => { }, CancellationToken.None)
        );

        // Cancelled on the last batch of epoch 3: the epoch completes, epoch 4 stops before its first batch.
        using var stop = new CancellationTokenSource();
        var checkpoints = new List<TrainingCheckpoint>();
        var stopped = HeadTrainer.Train(
            new HeadTrainingSet(x, y, vx, vy, 2),
            new EpochLoop(
                options,
                _ => { },
                (e, b, _) =>
                {
                    if ((e, b) == (3, 8))
                        stop.Cancel();
                },
                stop.Token,
                Checkpoints: new CheckpointSink(() => false, checkpoints.Add)
            )
        );
        Assert.True(stopped.Interrupted);
        stopped.Head.Dispose();
        var taken = Assert.Single(checkpoints);
        Assert.Equal((3, 0), (taken.Epoch, taken.InProgress?.BatchesDone));
        AssertSameResult(
            full,
            HeadTrainer.Train(
                new HeadTrainingSet(x, y, vx, vy, 2),
                new EpochLoop(options, _ => { }, (_, _, _) => { }, CancellationToken.None, ThroughStorage(taken))
            )
        );
        full.Head.Dispose();
    }

    [Fact]
    public void A_job_whose_checkpoints_are_never_due_writes_none()
    {
        var images = LabeledPhotos.AntsAndBees(6);
        var options = new TrainingOptions
        {
            Epochs = 2,
            BatchSize = 4,
            LearningRate = 0.01,
            ValidationFraction = 0.34,
            UnfreezeStages = 1,
            FineTuneEpochs = 2,
            FineTuneLrFactor = 2,
        };
        var observer = new RecordingObserver(checkpointDue: () => false);
        new TransferLearningTrainer(fixture.Backbone).Train(images, options, observer, CancellationToken.None);
        Assert.Equal(4, observer.Epochs.Count);
        Assert.Empty(observer.Checkpoints);
    }

    [Fact]
    public void Fine_tuning_stopped_between_batches_checkpoints_there_and_resumes_to_the_uninterrupted_result()
    {
        var images = LabeledPhotos.AntsAndBees(6);
        var options = new TrainingOptions
        {
            Epochs = 2,
            BatchSize = 2,
            LearningRate = 0.01,
            ValidationFraction = 0.34,
            UnfreezeStages = 1,
            FineTuneEpochs = 3,
            FineTuneLrFactor = 2,
        };
        var trainer = new TransferLearningTrainer(fixture.Backbone);
        var full = trainer.Train(images, options, new RecordingObserver(), CancellationToken.None);

        using var stop = new CancellationTokenSource();
        var stopping = new RecordingObserver(p =>
        {
            if (p is { Stage: TrainingStage.FineTuning, Epoch: 4, Batch: 2 })
                stop.Cancel();
        });
        var stopped = trainer.Train(images, options, stopping, stop.Token);
        Assert.True(stopped.Interrupted);
        var last = stopping.Checkpoints[^1];
        Assert.Equal((TrainingPhase.FineTuning, 3, 2), (last.Phase, last.Epoch, last.InProgress?.BatchesDone));
        Assert.Equal([1, 2, 3], last.Metrics.Select(m => m.Epoch));

        var resumedObserver = new RecordingObserver();
        var resumed = trainer.Train(images, options, resumedObserver, CancellationToken.None, ThroughStorage(last));
        AssertSameResult(full, resumed);
        Assert.Equal([4, 5], resumedObserver.Epochs.Select(m => m.Epoch));
    }

    [Fact]
    public void Features_are_reported_batch_by_batch_so_a_job_stopped_during_extraction_keeps_them()
    {
        var images = LabeledPhotos.AntsAndBees(6, withContentKeys: true);
        var options = new TrainingOptions { Epochs = 1, FeatureBatchSize = 4 };
        var trainer = new TransferLearningTrainer(fixture.Backbone);
        using var stop = new CancellationTokenSource();
        var observer = new RecordingObserver(p =>
        {
            if (p is { Stage: TrainingStage.ExtractingFeatures, Batch: 2 })
                stop.Cancel();
        });
        Assert.ThrowsAny<OperationCanceledException>(() => trainer.Train(images, options, observer, stop.Token));
        Assert.Equal(8, observer.Computed.Count);

        // A second run given those features embeds only the rest.
        var cached = observer.Computed.ToDictionary(c => c.ContentKey, c => c.Features);
        var withCache = images.Select(i => i with { Features = cached.GetValueOrDefault(i.ContentKey!) }).ToList();
        var rest = new RecordingObserver();
        var result = trainer.Train(withCache, options, rest, CancellationToken.None);
        Assert.Equal((images.Count - 8, 8), (result.Timings.ImagesEmbedded, result.Timings.FeaturesFromCache));
        Assert.Equal(images.Count - 8, rest.Computed.Count);
    }

    [Fact]
    public void A_checkpoint_of_other_options_is_refused()
    {
        var images = LabeledPhotos.AntsAndBees(2, DataSplit.Train);
        var options = new TrainingOptions { Epochs = 2, BatchSize = 2 };
        var trainer = new TransferLearningTrainer(fixture.Backbone);
        var observer = new RecordingObserver();
        trainer.Train(images, options, observer, CancellationToken.None);

        Assert.Throws<ArgumentException>(() =>
            trainer.Train(
                images,
                options with
                {
                    LearningRate = 0.01,
                },
                new RecordingObserver(),
                CancellationToken.None,
                observer.Checkpoints[0]
            )
        );
        Assert.Throws<InvalidDataException>(() =>
            TrainingCheckpoint.FromBytes(observer.Checkpoints[0].ToBytes()[..40])
        );
    }

    [Fact]
    public void A_checkpoint_stored_before_epochs_could_stop_part_way_still_reads()
    {
        var images = LabeledPhotos.AntsAndBees(2, DataSplit.Train);
        var observer = new RecordingObserver();
        new TransferLearningTrainer(fixture.Backbone).Train(
            images,
            new TrainingOptions { Epochs = 1, BatchSize = 2 },
            observer,
            CancellationToken.None
        );
        var current = observer.Checkpoints[0].ToBytes();
        // Format 1 is format 2 without the trailing "no epoch in progress" flag.
        var formatOne = current[..^1];
        BitConverter.GetBytes(1).CopyTo(formatOne, 0);

        var read = TrainingCheckpoint.FromBytes(formatOne);
        Assert.Null(read.InProgress);
        Assert.Equal(current, read.ToBytes());
    }

    /// <summary>A resumed head phase ended as the uninterrupted one did (the resumed head is disposed).</summary>
    private static void AssertSameResult(HeadTrainingResult full, HeadTrainingResult resumed)
    {
        AssertSameMetrics(full.Metrics, resumed.Metrics);
        Assert.Equal((full.BestEpoch, full.StoppedEarly), (resumed.BestEpoch, resumed.StoppedEarly));
        AssertSameWeights(full.Head, resumed.Head);
        resumed.Head.Dispose();
    }

    /// <summary>A resumed job ended as the uninterrupted one did: metrics, kept epoch and stages, weights.</summary>
    private static void AssertSameResult(TrainingResult full, TrainingResult resumed)
    {
        AssertSameMetrics(full.Metrics, resumed.Metrics);
        Assert.Equal((full.BestEpoch, full.FineTuned), (resumed.BestEpoch, resumed.FineTuned));
        Assert.Equal(full.Checkpoint.HeadWeights, resumed.Checkpoint.HeadWeights);
        Assert.Equal(full.Checkpoint.TailWeights, resumed.Checkpoint.TailWeights);
    }

    private static void AssertSameMetrics(IReadOnlyList<EpochMetrics> expected, IReadOnlyList<EpochMetrics> actual)
    {
        Assert.Equal(expected.Select(m => m.Epoch), actual.Select(m => m.Epoch));
        foreach (var (e, a) in expected.Zip(actual))
        {
            Assert.Equal(e.TrainLoss, a.TrainLoss, 1e-6);
            Assert.Equal(e.ValLoss ?? double.NaN, a.ValLoss ?? double.NaN, 1e-6);
            Assert.Equal(e.ValAccuracy ?? double.NaN, a.ValAccuracy ?? double.NaN, 1e-6);
            Assert.Equal(e.LearningRate, a.LearningRate, 1e-12);
        }
    }

    private static void AssertSameWeights(nn.Module<Tensor, Tensor> expected, nn.Module<Tensor, Tensor> actual)
    {
        foreach (var (e, a) in expected.parameters().Zip(actual.parameters()))
            Assert.True(e.allclose(a, rtol: 0, atol: 1e-6), "weights differ");
    }
}
