using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TransferApi.Training.Heads;

/// <summary>
/// A linear head fitted as the convex problem it is: softmax regression with an L2 penalty (weightDecay / 2 x the
/// squared weights, not the bias) minimised full-batch by libtorch's L-BFGS. Mini-batch Adam stops after its epochs
/// wherever it is; this converges, so the penalty alone sets how much the head trusts the training images, and a
/// search over it is a search over one well-behaved number. Raw features, not standardised ones: on the shared
/// photos standardising lost 1-2 points of held-out accuracy at every penalty (docs/training.md).
/// </summary>
internal static class LbfgsHead
{
    public static HeadTrainingResult Train(HeadTrainingSet data, EpochLoop loop)
    {
        var (features, labels, valFeatures, valLabels, classes) = data;
        var (options, onEpoch, onBatch, cancellation, _, _) = loop;
        var hasValidation = valFeatures is not null && valLabels is not null && valFeatures.shape[0] > 0;
        var head = (Linear)ClassifierHead.Create(options.Head, (int)features.shape[1], classes, options.Seed);
        using var classWeights = options.ClassWeighted ? HeadTrainer.BalancedWeights(labels, classes) : null;
        using var optimizer = optim.LBFGS(
            head.parameters(),
            lr: 1,
            max_iter: HeadTrainer.LbfgsIterationsPerEpoch,
            tolerange_grad: 1e-6,
            tolerance_change: 1e-9,
            history_size: 20
        );
        // Scalars held until libtorch has read them (see KeptAliveOptimizers).
        using Scalar halfPenalty = options.WeightDecay / 2,
            one = 1;
        var dataLoss = double.NaN;
        Tensor Objective()
        {
            // The module's zero_grad: the native optimizer's asks libtorch for a deprecated parameter list, which
            // logs a warning on every call.
            head.zero_grad();
            var loss = nn.functional.cross_entropy(
                head.call(features),
                labels,
                weight: classWeights,
                label_smoothing: options.LabelSmoothing
            );
            dataLoss = loss.item<float>();
            var total = options.WeightDecay > 0 ? loss.add(head.weight!.square().sum().mul_(halfPenalty), one) : loss;
            total.backward();
            return total;
        }

        var metrics = new List<EpochMetrics>();
        var best = new HeadTrainer.BestHead(options.EarlyStopping is { } early && hasValidation ? early : null);
        var (interrupted, converged, previous) = (false, false, double.NaN);
        head.train();
        for (var epoch = 1; epoch <= options.Epochs && !best.StopsTraining && !converged; epoch++)
        {
            if (cancellation.IsCancellationRequested)
            {
                if (metrics.Count == 0)
                    cancellation.ThrowIfCancellationRequested();
                interrupted = true;
                break;
            }
            double objective;
            using (NewDisposeScope())
                objective = optimizer.step(Objective).item<float>();
            if (!double.IsFinite(objective))
                throw new InvalidOperationException(
                    "L-BFGS diverged on these features: use a larger weightDecay or another optimizer."
                );
            // libtorch ends a step early once the gradient or the change is below tolerance: a step that no longer
            // moves the objective is the converged fit.
            converged = Math.Abs(previous - objective) <= 1e-7 * Math.Max(1, Math.Abs(objective));
            previous = objective;
            onBatch(epoch, 1, 1);
            var (valLoss, valAccuracy) = hasValidation
                ? HeadTrainer.Evaluate(head, valFeatures!, valLabels!)
                : ((double?)null, (double?)null);
            var epochMetrics = new EpochMetrics(epoch, dataLoss, valLoss, valAccuracy, 1);
            metrics.Add(epochMetrics);
            onEpoch(epochMetrics);
            best.Observe(epoch, valLoss, valAccuracy, head);
        }
        return best.Finish(head, metrics, options.Epochs, interrupted);
    }
}
