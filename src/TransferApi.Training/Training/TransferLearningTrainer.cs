using System.Diagnostics;
using TransferApi.Training.Backbones;
using static TorchSharp.torch;

namespace TransferApi.Training.Training;

/// <summary>
/// The foundation recipe: split, run the frozen backbone once over every image (batched, inference mode),
/// then train a linear head on the cached features for the requested epochs.
/// </summary>
public sealed class TransferLearningTrainer(Backbone backbone)
{
    // Share of the progress bar for feature extraction: it costs far more than the head's epochs.
    private const double ExtractionShare = 0.9;

    public TrainingResult Train(IReadOnlyList<LabeledImage> images, TrainingOptions options, ITrainingObserver observer, CancellationToken cancellation)
    {
        Validate(images, options);
        var labels = images.Select(i => i.Label).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var labelIndex = labels.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => (long)p.i, StringComparer.Ordinal);
        var (trainIdx, valIdx) = DataSplitter.Split(images, options.ValidationFraction, options.Seed);
        var missing = labels.Where(l => !trainIdx.Any(i => images[i].Label == l)).ToList();
        if (missing.Count > 0) throw new TrainingInputException($"No training images left for class(es): {string.Join(", ", missing)}.");

        using var scope = NewDisposeScope();
        var used = trainIdx.Concat(valIdx).ToArray();
        var extraction = Stopwatch.StartNew();
        var features = ExtractFeatures(used.Select(i => images[i].Bytes).ToList(), options, observer, cancellation);
        extraction.Stop();

        var trainX = features.narrow(0, 0, trainIdx.Length);
        var valX = features.narrow(0, trainIdx.Length, valIdx.Length);
        var trainY = tensor(trainIdx.Select(i => labelIndex[images[i].Label]).ToArray());
        var valY = tensor(valIdx.Select(i => labelIndex[images[i].Label]).ToArray());

        var metrics = new List<EpochMetrics>();
        var headClock = Stopwatch.StartNew();
        var head = HeadTrainer.Train(trainX, trainY, valIdx.Length > 0 ? valX : null, valIdx.Length > 0 ? valY : null, labels.Count, options,
            m =>
            {
                metrics.Add(m);
                observer.OnEpochCompleted(m);
            },
            (epoch, batch, batches) =>
            {
                var done = ((epoch - 1) * batches + batch) / (double)(options.Epochs * batches);
                var elapsed = headClock.Elapsed.TotalSeconds;
                observer.OnProgress(new TrainingProgress(TrainingStage.TrainingHead, epoch, options.Epochs, batch, batches,
                    100 * (ExtractionShare + (1 - ExtractionShare) * done), null, done > 0 ? elapsed / done * (1 - done) : null));
            },
            cancellation);
        headClock.Stop();

        var checkpoint = ModelCheckpoint.FromHead(backbone.Id, backbone.Preprocessor.Spec, labels, head);
        head.Dispose();
        observer.OnProgress(new TrainingProgress(TrainingStage.Done, options.Epochs, options.Epochs, 0, 0, 100, null, 0));
        return new TrainingResult(checkpoint, metrics, new TrainingTimings(extraction.Elapsed, headClock.Elapsed, used.Length), trainIdx.Length, valIdx.Length);
    }

    /// <summary>Features [N, F] of the images in order, each image through the backbone exactly once.</summary>
    public Tensor ExtractFeatures(IReadOnlyList<byte[]> images, TrainingOptions options, ITrainingObserver observer, CancellationToken cancellation)
    {
        var batches = (images.Count + options.FeatureBatchSize - 1) / options.FeatureBatchSize;
        var rows = new List<Tensor>(batches);
        var clock = Stopwatch.StartNew();
        observer.OnProgress(new TrainingProgress(TrainingStage.ExtractingFeatures, 0, options.Epochs, 0, batches, 0, null, null));
        for (var b = 0; b < batches; b++)
        {
            cancellation.ThrowIfCancellationRequested();
            var batch = images.Skip(b * options.FeatureBatchSize).Take(options.FeatureBatchSize).ToList();
            rows.Add(backbone.ExtractFeatures(batch));
            var done = Math.Min(images.Count, (b + 1) * options.FeatureBatchSize);
            var rate = done / clock.Elapsed.TotalSeconds;
            observer.OnProgress(new TrainingProgress(TrainingStage.ExtractingFeatures, 0, options.Epochs, b + 1, batches,
                100 * ExtractionShare * done / images.Count, rate, (images.Count - done) / rate));
        }
        var features = rows.Count == 0 ? zeros(0, backbone.FeatureSize) : cat(rows, 0);
        foreach (var row in rows) row.Dispose();
        return features;
    }

    private static void Validate(IReadOnlyList<LabeledImage> images, TrainingOptions options)
    {
        if (options.Epochs < 1) throw new TrainingInputException("epochs must be at least 1.");
        if (options.BatchSize < 1 || options.FeatureBatchSize < 1) throw new TrainingInputException("batch sizes must be at least 1.");
        if (!(options.LearningRate > 0)) throw new TrainingInputException("learningRate must be positive.");
        var classes = images.Where(i => i.Split != DataSplit.Test).Select(i => i.Label).Distinct(StringComparer.Ordinal).Count();
        if (classes < 2) throw new TrainingInputException($"Training needs at least 2 classes with images; the data set has {classes}.");
    }
}
