using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TransferApi.Training.Training;

/// <summary>Trains a linear softmax head on cached backbone features; the backbone is never touched here.</summary>
public static class HeadTrainer
{
    public static Linear Train(
        Tensor trainFeatures, Tensor trainLabels, Tensor? valFeatures, Tensor? valLabels, int classes,
        TrainingOptions options, Action<EpochMetrics> onEpoch, Action<int, int, int> onBatch, CancellationToken cancellation)
    {
        var head = ModelCheckpoint.CreateHead((int)trainFeatures.shape[1], classes);
        using (no_grad())
        {
            // Softmax regression is convex: a zero start is as good as a random one and needs no RNG.
            head.weight!.zero_();
            head.bias!.zero_();
        }
        using var optimizer = optim.Adam(head.parameters(), options.LearningRate);
        using var generator = new Generator((ulong)options.Seed);
        var count = trainFeatures.shape[0];
        var batches = (int)((count + options.BatchSize - 1) / options.BatchSize);

        for (var epoch = 1; epoch <= options.Epochs; epoch++)
        {
            head.train();
            double lossSum = 0;
            using (var order = randperm(count, generator: generator))
            {
                for (var b = 0; b < batches; b++)
                {
                    cancellation.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    var index = order.narrow(0, b * options.BatchSize, Math.Min(options.BatchSize, count - (long)b * options.BatchSize));
                    var x = trainFeatures.index_select(0, index);
                    var y = trainLabels.index_select(0, index);
                    optimizer.zero_grad();
                    var loss = nn.functional.cross_entropy(head.call(x), y);
                    loss.backward();
                    optimizer.step();
                    lossSum += loss.item<float>() * index.shape[0];
                    onBatch(epoch, b + 1, batches);
                }
            }
            var (valLoss, valAccuracy) = valFeatures is null || valLabels is null || valFeatures.shape[0] == 0
                ? ((double?)null, (double?)null)
                : Evaluate(head, valFeatures, valLabels);
            onEpoch(new EpochMetrics(epoch, lossSum / count, valLoss, valAccuracy));
        }
        head.eval();
        return head;
    }

    /// <summary>Mean cross-entropy and accuracy of the head on labelled features.</summary>
    public static (double Loss, double Accuracy) Evaluate(Linear head, Tensor features, Tensor labels)
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
}
