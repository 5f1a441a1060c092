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
    // Of the rest, the head's epochs take all but the final evaluation.
    private const double HeadShare = 0.99;

    public TrainingResult Train(IReadOnlyList<LabeledImage> images, TrainingOptions options, ITrainingObserver observer, CancellationToken cancellation)
    {
        Validate(images, options);
        var labels = images.Select(i => i.Label).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var labelIndex = labels.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => (long)p.i, StringComparer.Ordinal);
        var (trainIdx, valIdx) = DataSplitter.Split(images, options.ValidationFraction, options.Seed);
        var missing = labels.Where(l => !trainIdx.Any(i => images[i].Label == l)).ToList();
        if (missing.Count > 0) throw new TrainingInputException($"No training images left for class(es): {string.Join(", ", missing)}.");

        using var scope = NewDisposeScope();
        var testIdx = Enumerable.Range(0, images.Count).Where(i => images[i].Split == DataSplit.Test).ToArray();
        var used = trainIdx.Concat(valIdx).Concat(testIdx).ToArray();
        var extraction = Stopwatch.StartNew();
        // Each image goes through the frozen backbone at most once: cached features are reused as they are.
        var toEmbed = used.Where(i => images[i].Features is null).ToArray();
        float[] computed = [];
        if (toEmbed.Length > 0)
        {
            using var embedded = ExtractFeatures(toEmbed.Select(i => images[i].Bytes).ToList(), options, observer, cancellation);
            computed = embedded.data<float>().ToArray();
        }
        var row = toEmbed.Select((image, k) => (image, k)).ToDictionary(p => p.image, p => computed.AsSpan(p.k * backbone.FeatureSize, backbone.FeatureSize).ToArray());
        observer.OnFeaturesComputed(toEmbed.Where(i => images[i].ContentKey is not null)
            .Select(i => new ComputedFeatures(images[i].ContentKey!, row[i])).ToList());
        var values = used.SelectMany(i => images[i].Features ?? row[i]).ToArray();
        if (values.Length != used.Length * backbone.FeatureSize)
            throw new TrainingInputException($"Cached features do not match backbone '{backbone.Id}' ({backbone.FeatureSize} values per image).");
        var features = tensor(values, [used.Length, backbone.FeatureSize]);
        extraction.Stop();

        var trainX = features.narrow(0, 0, trainIdx.Length);
        var valX = features.narrow(0, trainIdx.Length, valIdx.Length);
        var testX = features.narrow(0, trainIdx.Length + valIdx.Length, testIdx.Length);
        var trainY = tensor(trainIdx.Select(i => labelIndex[images[i].Label]).ToArray());
        var valY = tensor(valIdx.Select(i => labelIndex[images[i].Label]).ToArray());

        var headClock = Stopwatch.StartNew();
        var trained = HeadTrainer.Train(trainX, trainY, valIdx.Length > 0 ? valX : null, valIdx.Length > 0 ? valY : null, labels.Count, options,
            observer.OnEpochCompleted,
            (epoch, batch, batches) =>
            {
                var done = ((epoch - 1) * batches + batch) / (double)(options.Epochs * batches);
                var elapsed = headClock.Elapsed.TotalSeconds;
                observer.OnProgress(new TrainingProgress(TrainingStage.TrainingHead, epoch, options.Epochs, batch, batches,
                    100 * (ExtractionShare + (1 - ExtractionShare) * HeadShare * done), null, done > 0 ? elapsed / done * (1 - done) : null));
            },
            cancellation);
        headClock.Stop();

        // The final word on the model: the test split when the data set has one, else validation.
        observer.OnProgress(new TrainingProgress(TrainingStage.Evaluating, trained.Metrics.Count, options.Epochs, 0, 0, 100 * (ExtractionShare + (1 - ExtractionShare) * HeadShare), null, null));
        var (evalSplit, evalX, evalIdx) = testIdx.Length > 0 ? ("test", testX, testIdx) : ("validation", valX, valIdx);
        ClassificationReport? report = null;
        if (evalIdx.Length > 0)
        {
            using var probabilities = Probabilities(trained.Head, evalX);
            var flat = probabilities.data<float>().ToArray();
            report = ClassificationReport.Compute(evalSplit, labels,
                Enumerable.Range(0, evalIdx.Length).Select(n => flat.AsSpan(n * labels.Count, labels.Count).ToArray()).ToList(),
                evalIdx.Select(i => (int)labelIndex[images[i].Label]).ToList());
        }
        var checkpoint = ModelCheckpoint.FromHead(backbone.Id, backbone.Preprocessor.Spec, labels, backbone.FeatureSize, options.Head, trained.Head);
        trained.Head.Dispose();
        var epochsRun = trained.Metrics.Count;
        observer.OnProgress(new TrainingProgress(TrainingStage.Done, epochsRun, options.Epochs, 0, 0, 100, null, 0));
        return new TrainingResult(checkpoint, trained.Metrics, new TrainingTimings(extraction.Elapsed, headClock.Elapsed, toEmbed.Length, used.Length - toEmbed.Length),
            trainIdx.Length, valIdx.Length, trained.BestEpoch, trained.StoppedEarly, trained.Interrupted, report);
    }

    private static Tensor Probabilities(nn.Module<Tensor, Tensor> head, Tensor features)
    {
        head.eval();
        using var mode = inference_mode();
        using var logits = head.call(features);
        return nn.functional.softmax(logits, 1).contiguous();
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
        if (options.Problems() is { Count: > 0 } problems) throw new TrainingInputException(string.Join(" ", problems.Select(p => p.Message)));
        var classes = images.Where(i => i.Split != DataSplit.Test).Select(i => i.Label).Distinct(StringComparer.Ordinal).Count();
        if (classes < 2) throw new TrainingInputException($"Training needs at least 2 classes with images; the data set has {classes}.");
    }
}
