using TorchSharp.Modules;
using TransferApi.Training.Backbones;
using TransferApi.Training.Checkpoints;
using TransferApi.Training.Heads;
using static TorchSharp.torch;

namespace TransferApi.Training.FineTuning;

/// <summary>What fine-tuning trains on: the pretrained tail, the trained head and the activations entering the
/// tail.</summary>
/// <param name="TrainRows">Rows of <paramref name="Activations"/> to train on, in label order.</param>
/// <param name="ValRows">Rows to validate on (null: no validation).</param>
/// <param name="FirstEpoch">The number of its first epoch (the head phase's epochs come before).</param>
public sealed record FineTuningSet(
    FeatureTail Tail,
    nn.Module<Tensor, Tensor> Head,
    ActivationStore Activations,
    long[] TrainRows,
    Tensor TrainLabels,
    long[]? ValRows,
    Tensor? ValLabels,
    int FirstEpoch
);

/// <param name="Improved">Whether fine-tuning beat the frozen backbone (with its trained head) on validation
/// loss.</param>
public sealed record FineTuneResult(
    IReadOnlyList<EpochMetrics> Metrics,
    bool Improved,
    int BestEpoch,
    bool Interrupted
);

/// <summary>
/// The second half of the recipe: after the head has converged on frozen features, train the last stages
/// together with the head at a lower learning rate, on the activations entering the first trained stage, read
/// from an <see cref="ActivationStore"/> a batch at a time (in memory, spilled or recomputed, by budget).
/// Batch-norm statistics stay fixed. The best state by validation
/// loss is kept, and if no epoch beats the frozen model, the tail and head are restored to it.
/// </summary>
public static class FineTuner
{
    public static FineTuneResult Train(FineTuningSet data, EpochLoop loop)
    {
        var (tail, head, activations, trainRows, trainLabels, valRows, valLabels, firstEpoch) = data;
        var (options, onEpoch, onBatch, cancellation, resume, checkpoints) = loop;
        if (resume is not null && resume.Phase != TrainingPhase.FineTuning)
            throw new ArgumentException("Not a fine-tuning checkpoint.", nameof(loop));
        var hasValidation = valRows is { Length: > 0 } && valLabels is not null;
        (double Loss, double Accuracy) Validate() =>
            Evaluate(tail, head, activations, valRows!, valLabels!, options.FeatureBatchSize);
        using var trainRowNumbers = tensor(trainRows);
        var tailRate = options.LearningRate / options.FineTuneLrFactor;
        using var optimizer = KeptAliveOptimizers.Adam(
            [
                new Adam.ParamGroup(head.parameters(), lr: options.LearningRate, weight_decay: options.WeightDecay),
                new Adam.ParamGroup(tail.parameters(), lr: tailRate, weight_decay: options.WeightDecay),
            ],
            options.LearningRate
        );
        long count = trainRows.Length;
        var batches = HeadTrainer.Batches(count, options.BatchSize);

        var metrics = new List<EpochMetrics>();
        // The best state so far as saved weights; epoch 0 is the frozen model the phase started from.
        (byte[] Head, byte[] Tail) best;
        var (bestLoss, bestEpoch) = (double.NaN, 0);
        var partial = resume?.InProgress;
        if (resume is null)
        {
            bestLoss = hasValidation ? Validate().Loss : double.NaN;
            best = (ModelCheckpoint.Save(head), ModelCheckpoint.Save(tail));
        }
        else
        {
            ModelCheckpoint.Load(head, resume.HeadWeights);
            ModelCheckpoint.Load(tail, resume.TailWeights!);
            TrainingCheckpoint.LoadOptimizer(optimizer, resume.OptimizerState);
            metrics.AddRange(resume.Metrics.Where(m => m.Epoch >= firstEpoch));
            best = (resume.Best.HeadWeights ?? resume.HeadWeights, resume.Best.TailWeights ?? resume.TailWeights!);
            (bestLoss, bestEpoch) = (resume.Best.Score, resume.Best.Epoch);
        }
        var interrupted = false;
        for (var epoch = firstEpoch + metrics.Count; epoch < firstEpoch + options.FineTuneEpochs; epoch++)
        {
            tail.TrainKeepingNormStatistics();
            head.train();
            var progress = partial ?? new EpochInProgress(0, 0, tailRate);
            // Stopped between batches: cancelled (always checkpointed: the head phase is done) or a checkpoint is due.
            progress = HeadTrainer.RunEpochPausing(
                head,
                count,
                epoch,
                stream: 1,
                progress,
                index =>
                {
                    optimizer.zero_grad();
                    var logits = head.call(tail.call(activations.Rows(trainRowNumbers.index_select(0, index))));
                    var loss = nn.functional.cross_entropy(
                        logits,
                        trainLabels.index_select(0, index),
                        label_smoothing: options.LabelSmoothing
                    );
                    loss.backward();
                    optimizer.step();
                    return loss;
                },
                loop,
                soFar => new TrainingCheckpoint(
                    "",
                    TrainingPhase.FineTuning,
                    epoch - 1,
                    metrics.ToList(),
                    ModelCheckpoint.Save(head),
                    ModelCheckpoint.Save(tail),
                    TrainingCheckpoint.SaveOptimizer(optimizer),
                    new BestSoFar(bestEpoch, bestLoss, 0, best.Head, best.Tail),
                    null,
                    soFar
                )
            );
            partial = null;
            if (progress.BatchesDone < batches)
            {
                interrupted = true;
                break;
            }
            var (valLoss, valAccuracy) = hasValidation ? Validate() : ((double?)null, (double?)null);
            var epochMetrics = new EpochMetrics(epoch, progress.LossSum / count, valLoss, valAccuracy, tailRate);
            metrics.Add(epochMetrics);
            onEpoch(epochMetrics);
            var isBest = !hasValidation || valLoss < bestLoss;
            if (isBest)
                (best, bestLoss, bestEpoch) = (
                    (ModelCheckpoint.Save(head), ModelCheckpoint.Save(tail)),
                    valLoss ?? double.NaN,
                    epoch
                );
            if (checkpoints?.IsDue() == true)
                checkpoints.Save(
                    new TrainingCheckpoint(
                        "",
                        TrainingPhase.FineTuning,
                        epoch,
                        metrics.ToList(),
                        isBest ? best.Head : ModelCheckpoint.Save(head),
                        isBest ? best.Tail : ModelCheckpoint.Save(tail),
                        TrainingCheckpoint.SaveOptimizer(optimizer),
                        new BestSoFar(bestEpoch, bestLoss, 0, isBest ? null : best.Head, isBest ? null : best.Tail),
                        null
                    )
                );
        }
        ModelCheckpoint.Load(head, best.Head);
        ModelCheckpoint.Load(tail, best.Tail);
        tail.eval();
        head.eval();
        return new FineTuneResult(metrics, bestEpoch >= firstEpoch, bestEpoch, interrupted);
    }

    /// <summary>Mean cross-entropy and accuracy of tail and head on the given rows, a batch at a time.</summary>
    public static (double Loss, double Accuracy) Evaluate(
        FeatureTail tail,
        nn.Module<Tensor, Tensor> head,
        ActivationStore activations,
        long[] rows,
        Tensor labels,
        int batchSize
    )
    {
        using var features = PooledFeatures(tail, activations, rows, batchSize);
        return HeadTrainer.Evaluate(head, features, labels);
    }

    /// <summary>The tail's pooled features [rows, F] (eval mode, no gradients), computed a batch at a time.</summary>
    public static Tensor PooledFeatures(FeatureTail tail, ActivationStore activations, long[] rows, int batchSize)
    {
        tail.eval();
        var parts = new List<Tensor>();
        using (inference_mode())
        {
            foreach (var chunk in rows.Chunk(batchSize))
            {
                using var scope = NewDisposeScope();
                parts.Add(tail.call(activations.Rows(tensor(chunk))).MoveToOuterDisposeScope());
            }
        }
        if (parts.Count == 0)
            return empty(0, 0);
        var features = cat(parts, 0);
        foreach (var part in parts)
            part.Dispose();
        return features;
    }
}
