using TransferApi.Training.Backbones;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TransferApi.Training.Training;

/// <param name="Improved">Whether fine-tuning beat the frozen backbone (with its trained head) on validation loss.</param>
public sealed record FineTuneResult(IReadOnlyList<EpochMetrics> Metrics, bool Improved, int BestEpoch, bool Interrupted);

/// <summary>
/// The second half of the recipe: after the head has converged on frozen features, train the last stages
/// together with the head at a lower learning rate, on cached activations entering the first trained stage
/// (so the frozen prefix never runs again). Batch-norm statistics stay fixed. The best state by validation
/// loss is kept, and if no epoch beats the frozen model, the tail and head are restored to it.
/// </summary>
public static class FineTuner
{
    public static FineTuneResult Train(
        ResNetTail tail, nn.Module<Tensor, Tensor> head, Tensor trainActivations, Tensor trainLabels, Tensor? valActivations, Tensor? valLabels,
        TrainingOptions options, int firstEpoch, Action<EpochMetrics> onEpoch, Action<int, int, int> onBatch, CancellationToken cancellation)
    {
        var hasValidation = valActivations is not null && valLabels is not null && valActivations.shape[0] > 0;
        var tailRate = options.LearningRate / options.FineTuneLrFactor;
        using var optimizer = optim.Adam(
            [new Adam.ParamGroup(head.parameters(), lr: options.LearningRate, weight_decay: options.WeightDecay),
             new Adam.ParamGroup(tail.parameters(), lr: tailRate, weight_decay: options.WeightDecay)],
            options.LearningRate);
        using var generator = new Generator((ulong)options.Seed + 1);
        var count = trainActivations.shape[0];
        var batches = (int)((count + options.BatchSize - 1) / options.BatchSize);

        var baseline = hasValidation ? Evaluate(tail, head, valActivations!, valLabels!).Loss : double.NaN;
        var best = Snapshot(tail, head);
        var (bestLoss, bestEpoch, improved, interrupted) = (baseline, 0, false, false);
        var metrics = new List<EpochMetrics>();
        try
        {
            for (var e = 0; e < options.FineTuneEpochs && !interrupted; e++)
            {
                var epoch = firstEpoch + e;
                tail.TrainKeepingNormStatistics();
                head.train();
                double lossSum = 0;
                using (var order = randperm(count, generator: generator))
                {
                    for (var b = 0; b < batches; b++)
                    {
                        if (cancellation.IsCancellationRequested)
                        {
                            interrupted = true;
                            break;
                        }
                        using var scope = NewDisposeScope();
                        var index = order.narrow(0, b * options.BatchSize, Math.Min(options.BatchSize, count - (long)b * options.BatchSize));
                        optimizer.zero_grad();
                        var logits = head.call(tail.call(trainActivations.index_select(0, index)));
                        var loss = nn.functional.cross_entropy(logits, trainLabels.index_select(0, index), label_smoothing: options.LabelSmoothing);
                        loss.backward();
                        optimizer.step();
                        lossSum += loss.item<float>() * index.shape[0];
                        onBatch(epoch, b + 1, batches);
                    }
                }
                if (interrupted) break;
                var (valLoss, valAccuracy) = hasValidation ? Evaluate(tail, head, valActivations!, valLabels!) : ((double?)null, (double?)null);
                var epochMetrics = new EpochMetrics(epoch, lossSum / count, valLoss, valAccuracy, tailRate);
                metrics.Add(epochMetrics);
                onEpoch(epochMetrics);
                if (!hasValidation || valLoss < bestLoss)
                {
                    Dispose(best);
                    best = Snapshot(tail, head);
                    (bestLoss, bestEpoch, improved) = (valLoss ?? double.NaN, epoch, true);
                }
            }
            Restore(tail, head, best);
        }
        finally
        {
            Dispose(best);
        }
        tail.eval();
        head.eval();
        return new FineTuneResult(metrics, improved, bestEpoch, interrupted);
    }

    public static (double Loss, double Accuracy) Evaluate(ResNetTail tail, nn.Module<Tensor, Tensor> head, Tensor activations, Tensor labels)
    {
        tail.eval();
        using var scope = NewDisposeScope();
        Tensor features;
        using (inference_mode())
        {
            features = tail.call(activations).clone();
        }
        return HeadTrainer.Evaluate(head, features, labels);
    }

    private static (Dictionary<string, Tensor> Tail, Dictionary<string, Tensor> Head) Snapshot(ResNetTail tail, nn.Module<Tensor, Tensor> head) =>
        (tail.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone()), head.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone()));

    private static void Restore(ResNetTail tail, nn.Module<Tensor, Tensor> head, (Dictionary<string, Tensor> Tail, Dictionary<string, Tensor> Head) state)
    {
        tail.load_state_dict(state.Tail);
        head.load_state_dict(state.Head);
    }

    private static void Dispose((Dictionary<string, Tensor> Tail, Dictionary<string, Tensor> Head) state)
    {
        foreach (var tensor in state.Tail.Values.Concat(state.Head.Values)) tensor.Dispose();
    }
}
