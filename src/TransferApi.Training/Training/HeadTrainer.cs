using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TransferApi.Training.Training;

/// <param name="Interrupted">Cancellation arrived after at least one epoch: <see cref="Head"/> holds the best completed epoch.</param>
public sealed record HeadTrainingResult(nn.Module<Tensor, Tensor> Head, IReadOnlyList<EpochMetrics> Metrics, int BestEpoch, bool StoppedEarly, bool Interrupted = false);

/// <summary>
/// Trains a head on cached backbone features (the backbone is never touched here): the chosen optimizer,
/// learning-rate schedule, label smoothing, class weights and early stopping that restores the best epoch.
/// Cancellation is checked every batch; once an epoch has completed, it ends training with that epoch's
/// best weights instead of throwing, so a cancelled job can still keep a usable model.
/// </summary>
public static class HeadTrainer
{
    public static HeadTrainingResult Train(
        Tensor trainFeatures, Tensor trainLabels, Tensor? valFeatures, Tensor? valLabels, int classes,
        TrainingOptions options, Action<EpochMetrics> onEpoch, Action<int, int, int> onBatch, CancellationToken cancellation)
    {
        var hasValidation = valFeatures is not null && valLabels is not null && valFeatures.shape[0] > 0;
        var head = ClassifierHead.Create(options.Head, (int)trainFeatures.shape[1], classes, options.Seed);
        using var classWeights = options.ClassWeighted ? BalancedWeights(trainLabels, classes) : null;
        var parameters = head.parameters().Where(p => p.requires_grad).ToList();
        using var optimizer = CreateOptimizer(parameters, options);
        using var generator = new Generator((ulong)options.Seed);
        var count = trainFeatures.shape[0];
        var batches = (int)((count + options.BatchSize - 1) / options.BatchSize);
        var scheduler = CreateScheduler(optimizer, options, batches);
        var stepPerBatch = options.Schedule == LrSchedule.OneCycle;

        var metrics = new List<EpochMetrics>();
        Dictionary<string, Tensor>? best = null;
        var (bestEpoch, bestScore, sinceBest) = (0, double.NaN, 0);
        var interrupted = false;
        void KeepBest(int epoch)
        {
            Dispose(best);
            best = head.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
            bestEpoch = epoch;
        }
        try
        {
            for (var epoch = 1; epoch <= options.Epochs; epoch++)
            {
                head.train();
                var learningRate = optimizer.ParamGroups.First().LearningRate;
                double lossSum = 0;
                using (var order = randperm(count, generator: generator))
                {
                    for (var b = 0; b < batches; b++)
                    {
                        if (cancellation.IsCancellationRequested)
                        {
                            if (metrics.Count == 0) cancellation.ThrowIfCancellationRequested();
                            interrupted = true;
                            break;
                        }
                        using var scope = NewDisposeScope();
                        var index = order.narrow(0, b * options.BatchSize, Math.Min(options.BatchSize, count - (long)b * options.BatchSize));
                        optimizer.zero_grad();
                        var loss = nn.functional.cross_entropy(head.call(trainFeatures.index_select(0, index)), trainLabels.index_select(0, index),
                            weight: classWeights, label_smoothing: options.LabelSmoothing);
                        loss.backward();
                        optimizer.step();
                        if (stepPerBatch) scheduler?.step();
                        lossSum += loss.item<float>() * index.shape[0];
                        onBatch(epoch, b + 1, batches);
                    }
                }
                if (interrupted) break;
                if (!stepPerBatch) scheduler?.step();
                var (valLoss, valAccuracy) = hasValidation ? Evaluate(head, valFeatures!, valLabels!) : ((double?)null, (double?)null);
                var epochMetrics = new EpochMetrics(epoch, lossSum / count, valLoss, valAccuracy, learningRate);
                metrics.Add(epochMetrics);
                onEpoch(epochMetrics);

                if (options.EarlyStopping is not { } stop || !hasValidation)
                {
                    KeepBest(epoch);
                    continue;
                }
                var score = stop.Monitor == MonitoredMetric.ValLoss ? -valLoss!.Value : valAccuracy!.Value;
                if (double.IsNaN(bestScore) || score > bestScore + stop.MinDelta)
                {
                    (bestScore, sinceBest) = (score, 0);
                    KeepBest(epoch);
                }
                else if (++sinceBest >= stop.Patience)
                {
                    break;
                }
            }
            if (best is not null) head.load_state_dict(best);
        }
        finally
        {
            Dispose(best);
        }
        head.eval();
        return new HeadTrainingResult(head, metrics, bestEpoch, !interrupted && metrics.Count < options.Epochs, interrupted);
    }

    /// <summary>Mean cross-entropy and accuracy of the head on labelled features.</summary>
    public static (double Loss, double Accuracy) Evaluate(nn.Module<Tensor, Tensor> head, Tensor features, Tensor labels)
    {
        var wasTraining = head.training;
        head.eval();
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        var logits = head.call(features);
        var loss = nn.functional.cross_entropy(logits, labels).item<float>();
        var accuracy = logits.argmax(1).eq(labels).to_type(ScalarType.Float32).mean().item<float>();
        if (wasTraining) head.train();
        return (loss, accuracy);
    }

    private static Tensor BalancedWeights(Tensor labels, int classes)
    {
        using var counts = bincount(labels, minlength: classes).to_type(ScalarType.Float32);
        return (labels.shape[0] / (classes * counts.clamp_min(1))).to_type(ScalarType.Float32);
    }

    private static OptimizerHelper CreateOptimizer(IEnumerable<Parameter> parameters, TrainingOptions options) => options.Optimizer switch
    {
        OptimizerKind.AdamW => optim.AdamW(parameters, options.LearningRate, weight_decay: options.WeightDecay),
        OptimizerKind.Sgd => optim.SGD(parameters, options.LearningRate, momentum: options.Momentum, weight_decay: options.WeightDecay),
        _ => optim.Adam(parameters, options.LearningRate, weight_decay: options.WeightDecay),
    };

    private static optim.lr_scheduler.LRScheduler? CreateScheduler(OptimizerHelper optimizer, TrainingOptions options, int batchesPerEpoch) => options.Schedule switch
    {
        LrSchedule.Step => optim.lr_scheduler.StepLR(optimizer, options.StepEpochs ?? Math.Max(1, options.Epochs / 3), options.StepGamma),
        LrSchedule.Cosine => optim.lr_scheduler.CosineAnnealingLR(optimizer, options.Epochs),
        LrSchedule.OneCycle => optim.lr_scheduler.OneCycleLR(optimizer, options.LearningRate, total_steps: options.Epochs * batchesPerEpoch,
            cycle_momentum: options.Optimizer == OptimizerKind.Sgd && options.Momentum > 0),
        _ => null,
    };

    private static void Dispose(Dictionary<string, Tensor>? state)
    {
        if (state is null) return;
        foreach (var tensor in state.Values) tensor.Dispose();
    }
}
