using System.Diagnostics;
using TransferApi.Training.Backbones;
using TransferApi.Training.Imaging;
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

    /// <param name="resume">A checkpoint this job reported earlier (<see cref="ITrainingObserver.OnCheckpoint"/>): training continues after its epoch.</param>
    public TrainingResult Train(
        IReadOnlyList<LabeledImage> images, TrainingOptions options, ITrainingObserver observer, CancellationToken cancellation, TrainingCheckpoint? resume = null)
    {
        Validate(images, options);
        if (options.UnfreezeStages > backbone.Stages)
            throw new TrainingInputException($"unfreezeStages must be between 0 and {backbone.Stages}: backbone '{backbone.Id}' ({backbone.Architecture.Name}) has {backbone.Stages} stages.");
        var fingerprint = Fingerprint(images, options);
        if (resume is not null && resume.Fingerprint != fingerprint)
            throw new ArgumentException("The checkpoint was made for other images, options or backbone.", nameof(resume));
        var labels = images.Select(i => i.Label).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var labelIndex = labels.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => (long)p.i, StringComparer.Ordinal);
        var (trainIdx, valIdx) = DataSplitter.Split(images, options.ValidationFraction, options.Seed);
        var missing = labels.Where(l => !trainIdx.Any(i => images[i].Label == l)).ToList();
        if (missing.Count > 0) throw new TrainingInputException($"No training images left for class(es): {string.Join(", ", missing)}.");

        using var scope = NewDisposeScope();
        var testIdx = Enumerable.Range(0, images.Count).Where(i => images[i].Split == DataSplit.Test).ToArray();
        var used = trainIdx.Concat(valIdx).Concat(testIdx).ToArray();
        var extraction = Stopwatch.StartNew();
        var stages = options.UnfreezeStages;
        Tensor features;
        Tensor? activations = null;
        FeatureTail? tail = null;
        int embeddedCount;
        if (stages == 0)
        {
            (features, embeddedCount) = FrozenFeatures(images, used, options, observer, cancellation);
        }
        else
        {
            // Fine-tuning needs, for every image, the activation entering the first unfrozen stage; the frozen
            // prefix runs once, and the pooled features for the head phase follow from the pretrained tail.
            activations = ExtractBatched(used.Select(i => images[i].Bytes).ToList(), null, (batch, _) => backbone.Activations(batch, backbone.Stages - stages), options, observer, cancellation);
            tail = backbone.CreateTail(stages);
            tail.eval();
            using (inference_mode())
            {
                using var pooled = tail.call(activations);
                features = pooled.clone();
            }
            embeddedCount = used.Length;
        }
        extraction.Stop();
        var fromCache = used.Length - embeddedCount;

        Tensor Rows(Tensor all, int from, int count) => all.narrow(0, from, count);
        var (trainX, valX, testX) = (Rows(features, 0, trainIdx.Length), Rows(features, trainIdx.Length, valIdx.Length), Rows(features, trainIdx.Length + valIdx.Length, testIdx.Length));
        var trainY = tensor(trainIdx.Select(i => labelIndex[images[i].Label]).ToArray());
        var valY = tensor(valIdx.Select(i => labelIndex[images[i].Label]).ToArray());
        var hasValidation = valIdx.Length > 0;
        var trainActivations = activations is null ? null : Rows(activations, 0, trainIdx.Length);

        if (options.Augmentation.Views > 0)
        {
            // Augmented views of the training images join the training rows; validation and test stay as they are.
            extraction.Start();
            var (viewOf, transforms) = DrawViews(trainIdx, options);
            var viewBytes = viewOf.Select(i => images[i].Bytes).ToList();
            Tensor viewFeatures;
            if (tail is null)
            {
                viewFeatures = ExtractBatched(viewBytes, transforms, backbone.ExtractFeatures, options, observer, cancellation);
            }
            else
            {
                var viewActivations = ExtractBatched(viewBytes, transforms, (batch, t) => backbone.Activations(batch, backbone.Stages - stages, t), options, observer, cancellation);
                using (inference_mode())
                {
                    using var pooled = tail.call(viewActivations);
                    viewFeatures = pooled.clone();
                }
                trainActivations = cat([trainActivations!, viewActivations], 0);
            }
            trainX = cat([trainX, viewFeatures], 0);
            trainY = cat([trainY, tensor(viewOf.Select(i => labelIndex[images[i].Label]).ToArray())], 0);
            embeddedCount += viewOf.Length;
            extraction.Stop();
        }

        var headShare = stages == 0 ? HeadShare : HeadShare * 0.2;
        var headClock = Stopwatch.StartNew();
        var trained = resume?.HeadPhase is { } headDone
            // The head phase had ended: fine-tuning's checkpoint carries the head's weights.
            ? new HeadTrainingResult(ClassifierHead.Create(options.Head, backbone.FeatureSize, labels.Count, options.Seed),
                resume.Metrics.Where(m => m.Epoch <= headDone.Epochs).ToList(), headDone.BestEpoch, headDone.StoppedEarly)
            : HeadTrainer.Train(trainX, trainY, hasValidation ? valX : null, hasValidation ? valY : null, labels.Count, options,
                observer.OnEpochCompleted, Progress(TrainingStage.TrainingHead, 0, options.Epochs, ExtractionShare, headShare, headClock, observer), cancellation,
                resume, CheckpointSink.For(observer, checkpoint => checkpoint with { Fingerprint = fingerprint }));
        var metrics = trained.Metrics.ToList();
        var (bestEpoch, interrupted, fineTuned) = (trained.BestEpoch, trained.Interrupted, 0);
        if (tail is not null && !interrupted)
        {
            var headPhase = new HeadPhaseOutcome(metrics.Count, trained.BestEpoch, trained.StoppedEarly);
            var fine = FineTuner.Train(tail, trained.Head, trainActivations!, trainY,
                hasValidation ? Rows(activations!, trainIdx.Length, valIdx.Length) : null, hasValidation ? valY : null, options, metrics.Count + 1,
                observer.OnEpochCompleted,
                Progress(TrainingStage.FineTuning, metrics.Count, options.FineTuneEpochs, ExtractionShare + (1 - ExtractionShare) * headShare, HeadShare - headShare, headClock, observer),
                cancellation, resume?.HeadPhase is null ? null : resume,
                CheckpointSink.For(observer,
                    checkpoint => checkpoint with { Fingerprint = fingerprint, HeadPhase = headPhase, Metrics = [.. trained.Metrics, .. checkpoint.Metrics] }));
            metrics.AddRange(fine.Metrics);
            interrupted = fine.Interrupted;
            if (fine.Improved)
            {
                (bestEpoch, fineTuned) = (fine.BestEpoch, stages);
                // Held-out images now go through the fine-tuned stages.
                using (inference_mode())
                {
                    using var tuned = tail.call(activations!);
                    features = tuned.clone();
                }
                (valX, testX) = (Rows(features, trainIdx.Length, valIdx.Length), Rows(features, trainIdx.Length + valIdx.Length, testIdx.Length));
            }
        }
        headClock.Stop();

        // The final word on the model: the test split when the data set has one, else validation. An interrupted
        // run's progress stays where it stopped.
        var totalEpochs = options.Epochs + (tail is null ? 0 : options.FineTuneEpochs);
        if (!interrupted)
            observer.OnProgress(new TrainingProgress(TrainingStage.Evaluating, metrics.Count, totalEpochs, 0, 0, 100 * (ExtractionShare + (1 - ExtractionShare) * HeadShare), null, null));
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
        var checkpoint = ModelCheckpoint.FromHead(backbone.Id, backbone.Preprocessor.Spec, labels, backbone.FeatureSize, options.Head, trained.Head) with
        {
            FineTunedStages = fineTuned,
            TailWeights = fineTuned > 0 ? ModelCheckpoint.Save(tail!) : null,
        };
        trained.Head.Dispose();
        tail?.Dispose();
        if (!interrupted) observer.OnProgress(new TrainingProgress(TrainingStage.Done, metrics.Count, totalEpochs, 0, 0, 100, null, 0));
        return new TrainingResult(checkpoint, metrics, new TrainingTimings(extraction.Elapsed, headClock.Elapsed, embeddedCount, fromCache),
            trainIdx.Length, valIdx.Length, bestEpoch, trained.StoppedEarly, interrupted, report, fineTuned);
    }

    /// <summary>What a checkpoint of this job must match: the backbone, the options and every image in order.</summary>
    public string Fingerprint(IReadOnlyList<LabeledImage> images, TrainingOptions options) => TrainingCheckpoint.FingerprintOf(backbone.Id, images, options);

    /// <summary>Each training image <see cref="TrainingOptions.Augmentation"/>.Views times, with seeded random transforms.</summary>
    private static (int[] Images, ViewTransform?[] Transforms) DrawViews(int[] trainIdx, TrainingOptions options)
    {
        var random = new Random(unchecked((int)options.Seed * 31 + 7));
        var images = Enumerable.Range(0, options.Augmentation.Views).SelectMany(_ => trainIdx).ToArray();
        return (images, images.Select(_ => (ViewTransform?)ViewTransform.Draw(random, options.Augmentation)).ToArray());
    }

    /// <summary>
    /// Pooled features of the used images: cached ones as given, the rest through the frozen backbone once.
    /// Each batch's features are reported as soon as they exist, so a job stopped part way keeps them.
    /// </summary>
    private (Tensor Features, int Embedded) FrozenFeatures(IReadOnlyList<LabeledImage> images, int[] used, TrainingOptions options, ITrainingObserver observer, CancellationToken cancellation)
    {
        var toEmbed = used.Where(i => images[i].Features is null).ToArray();
        float[] computed = [];
        if (toEmbed.Length > 0)
        {
            using var embedded = ExtractBatched(toEmbed.Select(i => images[i].Bytes).ToList(), null, backbone.ExtractFeatures, options, observer, cancellation,
                (first, rows) =>
                {
                    var batchValues = rows.data<float>().ToArray();
                    observer.OnFeaturesComputed(Enumerable.Range(0, (int)rows.shape[0])
                        .Where(k => images[toEmbed[first + k]].ContentKey is not null)
                        .Select(k => new ComputedFeatures(images[toEmbed[first + k]].ContentKey!, batchValues.AsSpan(k * backbone.FeatureSize, backbone.FeatureSize).ToArray()))
                        .ToList());
                });
            computed = embedded.data<float>().ToArray();
        }
        var row = toEmbed.Select((image, k) => (image, k)).ToDictionary(p => p.image, p => computed.AsSpan(p.k * backbone.FeatureSize, backbone.FeatureSize).ToArray());
        var values = used.SelectMany(i => images[i].Features ?? row[i]).ToArray();
        if (values.Length != used.Length * backbone.FeatureSize)
            throw new TrainingInputException($"Cached features do not match backbone '{backbone.Id}' ({backbone.FeatureSize} values per image).");
        return (tensor(values, [used.Length, backbone.FeatureSize]), toEmbed.Length);
    }

    /// <summary>Progress of an epoch loop mapped onto [<paramref name="from"/>, <paramref name="from"/> + <paramref name="span"/>] of the bar.</summary>
    private static Action<int, int, int> Progress(TrainingStage stage, int epochOffset, int totalEpochs, double from, double span, Stopwatch clock, ITrainingObserver observer)
    {
        var started = clock.Elapsed.TotalSeconds;
        return (epoch, batch, batches) =>
        {
            var done = ((epoch - epochOffset - 1) * batches + batch) / (double)(totalEpochs * batches);
            var elapsed = clock.Elapsed.TotalSeconds - started;
            observer.OnProgress(new TrainingProgress(stage, epoch, epochOffset + totalEpochs, batch, batches,
                100 * (from + (1 - ExtractionShare) * span * done), null, done > 0 ? elapsed / done * (1 - done) : null));
        };
    }

    private static Tensor Probabilities(nn.Module<Tensor, Tensor> head, Tensor features)
    {
        head.eval();
        using var mode = inference_mode();
        using var logits = head.call(features);
        return nn.functional.softmax(logits, 1).contiguous();
    }

    /// <summary>Features [N, F] of the images in order, each image through the backbone exactly once.</summary>
    public Tensor ExtractFeatures(IReadOnlyList<byte[]> images, TrainingOptions options, ITrainingObserver observer, CancellationToken cancellation) =>
        ExtractBatched(images.ToList(), null, backbone.ExtractFeatures, options, observer, cancellation);

    /// <summary>Runs <paramref name="run"/> over the images (and their transforms) in batches, reporting progress, and stacks the results.</summary>
    /// <param name="onRows">Called with each batch's first image index and its rows.</param>
    private Tensor ExtractBatched(
        List<byte[]> images, IReadOnlyList<ViewTransform?>? transforms, Func<IReadOnlyList<byte[]>, IReadOnlyList<ViewTransform?>?, Tensor> run,
        TrainingOptions options, ITrainingObserver observer, CancellationToken cancellation, Action<int, Tensor>? onRows = null)
    {
        var batches = (images.Count + options.FeatureBatchSize - 1) / options.FeatureBatchSize;
        var rows = new List<Tensor>(batches);
        var clock = Stopwatch.StartNew();
        observer.OnProgress(new TrainingProgress(TrainingStage.ExtractingFeatures, 0, options.Epochs, 0, batches, 0, null, null));
        for (var b = 0; b < batches; b++)
        {
            cancellation.ThrowIfCancellationRequested();
            var batch = images.Skip(b * options.FeatureBatchSize).Take(options.FeatureBatchSize).ToList();
            rows.Add(run(batch, transforms?.Skip(b * options.FeatureBatchSize).Take(options.FeatureBatchSize).ToList()));
            onRows?.Invoke(b * options.FeatureBatchSize, rows[^1]);
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
