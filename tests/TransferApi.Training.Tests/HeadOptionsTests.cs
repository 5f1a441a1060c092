using TransferApi.Training.Heads;
using static TorchSharp.torch;

namespace TransferApi.Training.Tests;

/// <summary>Each head-training option does what its name promises, on small synthetic feature sets.</summary>
public class HeadOptionsTests
{
    private static (Tensor X, Tensor Y) Clusters(int perClass, long seed, double separation = 2)
    {
        using var generator = new Generator((ulong)seed);
        var x = cat(
            [
                randn(perClass, 16, generator: generator) + separation,
                randn(perClass, 16, generator: generator) - separation,
            ],
            0
        );
        var y = cat([zeros(perClass, ScalarType.Int64), ones(perClass, ScalarType.Int64)], 0);
        return (x, y);
    }

    /// <summary>XOR in the first two features: no straight line separates it, one hidden layer does.</summary>
    private static (Tensor X, Tensor Y) Xor(int count, long seed)
    {
        using var generator = new Generator((ulong)seed);
        var signs = randint(0, 2, [count, 2], generator: generator).to_type(ScalarType.Float32) * 2 - 1;
        var x = cat(
            [signs * 3 + randn(count, 2, generator: generator) * 0.3, randn(count, 14, generator: generator)],
            1
        );
        var y = signs[.., 0].mul(signs[.., 1]).lt(0).to_type(ScalarType.Int64);
        return (x, y);
    }

    private static HeadTrainingResult Train(
        Tensor x,
        Tensor y,
        Tensor? vx,
        Tensor? vy,
        TrainingOptions options,
        List<EpochMetrics>? epochs = null
    ) =>
        HeadTrainer.Train(
            new HeadTrainingSet(x, y, vx, vy, 2),
            new EpochLoop(options, m => epochs?.Add(m), (_, _, _) => { }, CancellationToken.None)
        );

    [Fact]
    public void Lbfgs_reaches_the_penalised_optimum_and_stops_there()
    {
        var (x, y) = Clusters(40, 1, separation: 0.5);
        double[] Fit(double penalty, out int epochs)
        {
            var seen = new List<EpochMetrics>();
            using var head = (TorchSharp.Modules.Linear)
                Train(
                    x,
                    y,
                    null,
                    null,
                    new TrainingOptions
                    {
                        Optimizer = OptimizerKind.Lbfgs,
                        WeightDecay = penalty,
                        Epochs = 50,
                    },
                    seen
                ).Head;
            epochs = seen.Count;
            // At the optimum the penalised objective's gradient vanishes.
            head.zero_grad();
            var objective = TorchSharp
                .torch.nn.functional.cross_entropy(head.call(x), y)
                .add(head.weight!.square().sum().mul(penalty / 2));
            objective.backward();
            Assert.True(
                head.weight.grad!.abs().max().item<float>() < 1e-3,
                $"gradient {head.weight.grad.abs().max().item<float>()} at L2 {penalty}"
            );
            return head.weight.detach().data<float>().Select(w => (double)w).ToArray();
        }

        var weak = Fit(1e-3, out var weakEpochs);
        var strong = Fit(1, out _);
        Assert.True(weakEpochs < 50, $"{weakEpochs} epochs: it did not stop once converged");
        Assert.True(strong.Sum(w => w * w) < weak.Sum(w => w * w) / 4);
        Assert.Contains(
            new TrainingOptions { Optimizer = OptimizerKind.Lbfgs, Head = new HeadSpec(HeadKind.Mlp) }.Problems(),
            p => p.Field == "optimizer"
        );
    }

    [Theory]
    [InlineData("Adam")]
    [InlineData("AdamW")]
    [InlineData("Sgd")]
    public void Kept_alive_optimizers_step_exactly_like_TorchSharps(string kind)
    {
        var (x, y) = Clusters(40, 3);
        byte[] Fit(bool keptAlive, int steps = 25)
        {
            using var scope = NewDisposeScope();
            using var head = TorchSharp.torch.nn.Sequential(
                ("0", TorchSharp.torch.nn.Linear(16, 8)),
                ("1", TorchSharp.torch.nn.ReLU()),
                ("2", TorchSharp.torch.nn.Linear(8, 2))
            );
            using (no_grad())
            {
                using var generator = new Generator(5);
                foreach (var p in head.parameters())
                    p.copy_(randn(p.shape, generator: generator));
            }
            var parameters = head.parameters().ToList();
            using TorchSharp.Modules.OptimizerHelper optimizer = (kind, keptAlive) switch
            {
                ("Adam", true) => KeptAliveOptimizers.Adam(parameters, 0.01, 0.003),
                ("Adam", false) => TorchSharp.torch.optim.Adam(parameters, 0.01, weight_decay: 0.003),
                ("AdamW", true) => KeptAliveOptimizers.AdamW(parameters, 0.01, 0.05),
                ("AdamW", false) => TorchSharp.torch.optim.AdamW(parameters, 0.01, weight_decay: 0.05),
                (_, true) => KeptAliveOptimizers.Sgd(parameters, 0.05, 0.9, 0.003),
                _ => TorchSharp.torch.optim.SGD(parameters, 0.05, momentum: 0.9, weight_decay: 0.003),
            };
            for (var step = 0; step < steps; step++)
            {
                optimizer.zero_grad();
                TorchSharp.torch.nn.functional.cross_entropy(head.call(x), y).backward();
                optimizer.step();
            }
            return Checkpoints.ModelCheckpoint.Save(head);
        }

        var reference = Fit(keptAlive: false);
        Assert.Equal(reference, Fit(keptAlive: true));
        // Equal because the steps are the same, not because neither moved the weights.
        Assert.NotEqual(Fit(keptAlive: true, steps: 0), reference);
    }

    [Theory]
    [InlineData(OptimizerKind.Adam, 0.01)]
    [InlineData(OptimizerKind.AdamW, 0.01)]
    [InlineData(OptimizerKind.Sgd, 0.05)]
    public void Every_optimizer_lowers_the_loss(OptimizerKind optimizer, double learningRate)
    {
        var (x, y) = Clusters(40, 1);
        var epochs = new List<EpochMetrics>();
        using var head = Train(
            x,
            y,
            null,
            null,
            new TrainingOptions
            {
                Epochs = 6,
                BatchSize = 16,
                Optimizer = optimizer,
                LearningRate = learningRate,
                WeightDecay = 1e-4,
            },
            epochs
        ).Head;
        Assert.True(
            epochs[^1].TrainLoss < epochs[0].TrainLoss * 0.6,
            $"{optimizer}: {epochs[0].TrainLoss} -> {epochs[^1].TrainLoss}"
        );
    }

    [Fact]
    public void An_mlp_head_learns_what_a_linear_head_cannot()
    {
        var (x, y) = Xor(400, 2);
        var (vx, vy) = Xor(200, 3);
        var options = new TrainingOptions
        {
            Epochs = 30,
            BatchSize = 32,
            LearningRate = 0.01,
        };
        var linear = Train(x, y, vx, vy, options with { Head = HeadSpec.Linear });
        var mlp = Train(
            x,
            y,
            vx,
            vy,
            options with
            {
                Head = new HeadSpec(HeadKind.Mlp, HiddenUnits: 32, Dropout: 0.1),
            }
        );
        Assert.InRange(linear.Metrics[^1].ValAccuracy!.Value, 0.3, 0.7);
        Assert.True(mlp.Metrics[^1].ValAccuracy > 0.95, $"MLP val accuracy {mlp.Metrics[^1].ValAccuracy}");
        linear.Head.Dispose();
        mlp.Head.Dispose();
    }

    [Fact]
    public void Step_schedule_decays_by_gamma_every_step()
    {
        var (x, y) = Clusters(16, 1);
        var epochs = new List<EpochMetrics>();
        Train(
            x,
            y,
            null,
            null,
            new TrainingOptions
            {
                Epochs = 7,
                LearningRate = 0.1,
                Schedule = LrSchedule.Step,
                StepEpochs = 3,
                StepGamma = 0.5,
            },
            epochs
        )
            .Head.Dispose();
        Assert.Equal(
            new[] { 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025 },
            epochs.Select(e => Math.Round(e.LearningRate, 6))
        );
    }

    [Fact]
    public void Cosine_schedule_follows_half_a_cosine_to_zero()
    {
        var (x, y) = Clusters(16, 1);
        var epochs = new List<EpochMetrics>();
        Train(
            x,
            y,
            null,
            null,
            new TrainingOptions
            {
                Epochs = 8,
                LearningRate = 0.1,
                Schedule = LrSchedule.Cosine,
            },
            epochs
        )
            .Head.Dispose();
        for (var e = 0; e < 8; e++)
            Assert.Equal(0.1 * (1 + Math.Cos(Math.PI * e / 8)) / 2, epochs[e].LearningRate, 6);
    }

    [Fact]
    public void One_cycle_schedule_warms_up_to_the_peak_then_anneals()
    {
        var (x, y) = Clusters(32, 1);
        var epochs = new List<EpochMetrics>();
        Train(
            x,
            y,
            null,
            null,
            new TrainingOptions
            {
                Epochs = 10,
                BatchSize = 8,
                LearningRate = 0.1,
                Schedule = LrSchedule.OneCycle,
            },
            epochs
        )
            .Head.Dispose();
        var rates = epochs.Select(e => e.LearningRate).ToList();
        Assert.Equal(0.1 / 25, rates[0], 6);
        var peak = rates.IndexOf(rates.Max());
        Assert.InRange(peak, 2, 4);
        Assert.True(rates.Max() > 0.09);
        Assert.Equal(rates[..(peak + 1)].Order(), rates[..(peak + 1)]);
        Assert.Equal(rates[peak..].OrderDescending(), rates[peak..]);
        Assert.True(rates[^1] < rates.Max() / 20);
    }

    [Fact]
    public void Early_stopping_stops_after_patience_and_restores_the_best_epoch()
    {
        var (x, y) = Clusters(40, 1);
        var (vx, vy) = Clusters(20, 2);
        using var flipped = 1 - vy; // validation disagrees with training: it gets worse every epoch after the first
        var epochs = new List<EpochMetrics>();
        var result = Train(
            x,
            y,
            vx,
            flipped,
            new TrainingOptions
            {
                Epochs = 50,
                LearningRate = 0.01,
                EarlyStopping = new(MonitoredMetric.ValLoss, Patience: 3),
            },
            epochs
        );
        Assert.Equal(4, epochs.Count);
        Assert.True(result.StoppedEarly);
        Assert.Equal(1, result.BestEpoch);
        var (restoredLoss, _) = HeadTrainer.Evaluate(result.Head, vx, flipped);
        Assert.Equal(epochs[0].ValLoss!.Value, restoredLoss, 5);
        result.Head.Dispose();
    }

    [Fact]
    public void Cancelling_after_an_epoch_ends_training_with_the_best_epoch_so_far()
    {
        var (x, y) = Clusters(40, 1);
        var (vx, vy) = Clusters(20, 2);
        using var cancel = new CancellationTokenSource();
        var result = HeadTrainer.Train(
            new HeadTrainingSet(x, y, vx, vy, 2),
            new EpochLoop(
                new TrainingOptions { Epochs = 50, LearningRate = 0.01 },
                m =>
                {
                    if (m.Epoch == 3)
                        cancel.Cancel();
                },
                (_, _, _) => { },
                cancel.Token
            )
        );
        Assert.True(result.Interrupted);
        Assert.False(result.StoppedEarly);
        Assert.Equal(3, result.Metrics.Count);
        Assert.Equal(3, result.BestEpoch);
        Assert.Equal(result.Metrics[2].ValLoss!.Value, HeadTrainer.Evaluate(result.Head, vx, vy).Loss, 5);
        result.Head.Dispose();
    }

    [Fact]
    public void Cancelling_before_the_first_epoch_completes_throws()
    {
        var (x, y) = Clusters(40, 1);
        using var cancel = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() =>
            HeadTrainer.Train(
                new HeadTrainingSet(x, y, null, null, 2),
                new EpochLoop(
                    new TrainingOptions { Epochs = 5, BatchSize = 8 },
                    _ => { },
                    (_, batch, _) =>
                    {
                        if (batch == 2)
                            cancel.Cancel();
                    },
                    cancel.Token
                )
            )
        );
    }

    [Fact]
    public void Label_smoothing_makes_the_head_less_confident()
    {
        var (x, y) = Clusters(40, 1, separation: 3);
        double MeanTopProbability(double smoothing)
        {
            using var head = Train(
                x,
                y,
                null,
                null,
                new TrainingOptions
                {
                    Epochs = 20,
                    LearningRate = 0.05,
                    LabelSmoothing = smoothing,
                }
            ).Head;
            using var probabilities = nn.functional.softmax(head.call(x), 1);
            return probabilities.max(1).values.mean().item<float>();
        }
        var sharp = MeanTopProbability(0);
        var smoothed = MeanTopProbability(0.3);
        Assert.True(sharp > 0.99, $"without smoothing {sharp}");
        Assert.True(smoothed < 0.9, $"with smoothing 0.3 {smoothed}");
    }

    [Fact]
    public void Class_weighting_raises_recall_of_a_rare_class()
    {
        using var generator = new Generator(5UL);
        // Heavily overlapping classes at 15:1: unweighted, the head mostly answers the common class.
        var x = cat([randn(300, 16, generator: generator) + 0.15, randn(20, 16, generator: generator) - 0.15], 0);
        var y = cat([zeros(300, ScalarType.Int64), ones(20, ScalarType.Int64)], 0);
        double RareRecall(bool weighted)
        {
            using var head = Train(
                x,
                y,
                null,
                null,
                new TrainingOptions
                {
                    Epochs = 15,
                    LearningRate = 0.01,
                    ClassWeighted = weighted,
                }
            ).Head;
            using var predicted = head.call(x).argmax(1);
            return predicted[300..].eq(1).to_type(ScalarType.Float32).mean().item<float>();
        }
        var plain = RareRecall(false);
        var weighted = RareRecall(true);
        Assert.True(weighted > plain + 0.2, $"rare-class recall {plain} -> {weighted}");
    }

    [Fact]
    public void Invalid_options_are_named()
    {
        var problems = new TrainingOptions
        {
            Epochs = 0,
            LabelSmoothing = 1,
            Head = new HeadSpec(HeadKind.Mlp, HiddenUnits: 0),
            EarlyStopping = new(Patience: 0),
        }.Problems();
        Assert.Equal(
            ["epochs", "hiddenUnits", "labelSmoothing", "earlyStopping.patience"],
            problems.Select(p => p.Field)
        );
    }
}
