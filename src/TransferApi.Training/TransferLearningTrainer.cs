using TransferApi.Training.Checkpoints;
using TransferApi.Training.Evaluation;
using TransferApi.Training.FineTuning;
using TransferApi.Training.Heads;
using System.Diagnostics;
using TransferApi.Training.Backbones;
using TransferApi.Training.Imaging;
using static TorchSharp.torch;

namespace TransferApi.Training;

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
    /// <param name="source">Where the images' bytes are read from, a batch at a time (default: <see cref="LabeledImage.Bytes"/>).</param>
    /// <param name="activationBudget">How much of fine-tuning's activations stay in memory (default: all).</param>
    public TrainingResult Train(
        IReadOnlyList<LabeledImage> images, TrainingOptions options, ITrainingObserver observer, CancellationToken cancellation, TrainingCheckpoint? resume = null,
        IImageSource? source = null, ActivationBudget? activationBudget = null)
    {
        Validate(images, options);
        if (options.UnfreezeStages > backbone.Stages)
            throw new TrainingInputException($"unfreezeStages must be between 0 and {backbone.Stages}: backbone '{backbone.Id}' ({backbone.Architecture.Name}) has {backbone.Stages} stages.");
        var fingerprint = Fingerprint(images, options);
        if (resume is not null && resume.Fingerprint != fingerprint)
            throw new ArgumentException("The checkpoint was made for other images, options or backbone.", nameof(resume));
        source ??= new InMemoryImageSource(images.Select(i => i.Bytes).ToList());
        var labels = images.Select(i => i.Label).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var labelIndex = labels.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => (long)p.i, StringComparer.Ordinal);
        var (trainIdx, valIdx) = DataSplitter.Split(images, options.ValidationFraction, options.Seed);
        var missing = labels.Where(l => !trainIdx.Any(i => images[i].Label == l)).ToList();
        if (missing.Count > 0) throw new TrainingInputException($"No training images left for class(es): {string.Join(", ", missing)}.");

        using var scope = NewDisposeScope();
        var testIdx = Enumerable.Range(0, images.Count).Where(i => images[i].Split == DataSplit.Test).ToArray();
        var used = trainIdx.Concat(valIdx).Concat(testIdx).ToArray();
        var plan = new Plan(fingerprint, labels, labelIndex, trainIdx, valIdx, testIdx);
        // Augmented views of the training images join the training rows; validation and test stay as they are.
        var (viewOf, transforms) = DrawViews(trainIdx, options);
        var extraction = Stopwatch.StartNew();
        var stages = options.UnfreezeStages;
        Tensor features, viewFeatures;
        FeatureTail? tail = null;
        ActivationStore? activations = null;
        try
        {
            if (stages == 0)
            {
                (features, var embedded) = FrozenFeatures(images, used, source, options, observer, cancellation);
                viewFeatures = ExtractBatched(source, viewOf, transforms, backbone.ExtractFeatures, options, observer, cancellation);
                extraction.Stop();
                return TrainOnFeatures(images, options, observer, resume, plan,
                    new Extracted(features, viewOf, viewFeatures, null, null, 0, extraction.Elapsed, embedded + viewOf.Length, used.Length - embedded), cancellation);
            }
            // Fine-tuning needs, for every image and view, the activation entering the first unfrozen stage: the frozen
            // prefix runs once, each batch going to the activation store; the pooled features for the head phase
            // follow from the pretrained tail batch by batch.
            tail = backbone.CreateTail(stages);
            tail.eval();
            var firstTrained = backbone.Stages - stages;
            int[] rowImages = [.. used, .. viewOf];
            ViewTransform?[] rowTransforms = [.. used.Select(_ => (ViewTransform?)null), .. transforms];
            var budget = activationBudget ?? ActivationBudget.Unbounded;
            Tensor Recompute(long[] rows)
            {
                var bytes = source.Batches(rows.Select(r => rowImages[r]).ToList(), rows.Length, cancellation).Single();
                var rowViews = rows.Select(r => rowTransforms[r]).ToList();
                return backbone.Activations(bytes, firstTrained, rowViews.Any(t => t is not null) ? rowViews : null);
            }
            Tensor Pooled(IReadOnlyList<byte[]> batch, IReadOnlyList<ViewTransform?>? views)
            {
                // The tail's intermediate tensors die with the batch, not with the job.
                using var batchScope = NewDisposeScope();
                var activation = backbone.Activations(batch, firstTrained, views);
                if (activations is null)
                {
                    activations = ActivationStore.Create(rowImages.Length, activation.shape[1..], budget, Recompute);
                    observer.OnActivations(new ActivationUsage(activations.Storage, activations.Bytes, budget.MemoryBytes));
                }
                activations.Append(activation);
                using var mode = inference_mode();
                return tail.call(activation).clone().MoveToOuterDisposeScope();
            }
            features = ExtractBatched(source, used, null, Pooled, options, observer, cancellation);
            viewFeatures = ExtractBatched(source, viewOf, transforms, Pooled, options, observer, cancellation);
            extraction.Stop();
            return TrainOnFeatures(images, options, observer, resume, plan,
                new Extracted(features, viewOf, viewFeatures, tail, activations, budget.MemoryBytes, extraction.Elapsed, rowImages.Length, 0), cancellation);
        }
        finally
        {
            activations?.Dispose();
            tail?.Dispose();
        }
    }

    /// <summary>The head (and fine-tuning) phases and the final evaluation, once every image has its features.</summary>
    private TrainingResult TrainOnFeatures(
        IReadOnlyList<LabeledImage> images, TrainingOptions options, ITrainingObserver observer, TrainingCheckpoint? resume, Plan plan, Extracted extracted,
        CancellationToken cancellation)
    {
        var (fingerprint, labels, labelIndex, trainIdx, valIdx, testIdx) = plan;
        var (features, viewOf, viewFeatures, tail, activations, activationBudgetBytes, extraction, embeddedCount, fromCache) = extracted;
        var stages = options.UnfreezeStages;
        Tensor Rows(Tensor all, int from, int count) => all.narrow(0, from, count);
        var (trainX, valX, testX) = (Rows(features, 0, trainIdx.Length), Rows(features, trainIdx.Length, valIdx.Length), Rows(features, trainIdx.Length + valIdx.Length, testIdx.Length));
        var trainY = tensor(trainIdx.Concat(viewOf).Select(i => labelIndex[images[i].Label]).ToArray());
        var valY = tensor(valIdx.Select(i => labelIndex[images[i].Label]).ToArray());
        var hasValidation = valIdx.Length > 0;
        if (viewOf.Length > 0) trainX = cat([trainX, viewFeatures], 0);
        // Rows of the activation store: the used images in order (train, validation, test), then the views.
        var usedCount = trainIdx.Length + valIdx.Length + testIdx.Length;
        long[] RowRange(long from, int count) => Enumerable.Range(0, count).Select(k => from + k).ToArray();
        long[] trainRows = [.. RowRange(0, trainIdx.Length), .. RowRange(usedCount, viewOf.Length)];
        var (valRows, heldOutRows) = (RowRange(trainIdx.Length, valIdx.Length), RowRange(trainIdx.Length, valIdx.Length + testIdx.Length));

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
            var fine = FineTuner.Train(tail, trained.Head, activations!, trainRows, trainY, hasValidation ? valRows : null, hasValidation ? valY : null,
                options, metrics.Count + 1, observer.OnEpochCompleted,
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
                var heldOut = FineTuner.PooledFeatures(tail, activations!, heldOutRows, options.FeatureBatchSize);
                (valX, testX) = (Rows(heldOut, 0, valIdx.Length), Rows(heldOut, valIdx.Length, testIdx.Length));
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
        if (!interrupted) observer.OnProgress(new TrainingProgress(TrainingStage.Done, metrics.Count, totalEpochs, 0, 0, 100, null, 0));
        return new TrainingResult(checkpoint, metrics, new TrainingTimings(extraction, headClock.Elapsed, embeddedCount, fromCache),
            trainIdx.Length, valIdx.Length, bestEpoch, trained.StoppedEarly, interrupted, report, fineTuned,
            activations is null ? null : new ActivationUsage(activations.Storage, activations.Bytes, activationBudgetBytes));
    }

    /// <summary>The job's classes and splits, decided before any image is read.</summary>
    private sealed record Plan(string Fingerprint, List<string> Labels, Dictionary<string, long> LabelIndex, int[] TrainIdx, int[] ValIdx, int[] TestIdx);

    /// <summary>Every used image's (and view's) features, and for fine-tuning the tail and the activations it trains on.</summary>
    private sealed record Extracted(
        Tensor Features, int[] ViewOf, Tensor ViewFeatures, FeatureTail? Tail, ActivationStore? Activations, long ActivationBudgetBytes,
        TimeSpan Extraction, int Embedded, int FromCache);

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
    private (Tensor Features, int Embedded) FrozenFeatures(
        IReadOnlyList<LabeledImage> images, int[] used, IImageSource source, TrainingOptions options, ITrainingObserver observer, CancellationToken cancellation)
    {
        var toEmbed = used.Where(i => images[i].Features is null).ToArray();
        float[] computed = [];
        if (toEmbed.Length > 0)
        {
            using var embedded = ExtractBatched(source, toEmbed, null, backbone.ExtractFeatures, options, observer, cancellation,
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
        ExtractBatched(new InMemoryImageSource(images), Enumerable.Range(0, images.Count).ToList(), null, backbone.ExtractFeatures, options, observer, cancellation);

    /// <summary>
    /// Runs <paramref name="run"/> over the images (and their transforms) in batches read from <paramref name="source"/>,
    /// reporting progress, and stacks the results: only one batch of bytes and pixels is held at a time.
    /// </summary>
    /// <param name="onRows">Called with each batch's first image index and its rows.</param>
    private Tensor ExtractBatched(
        IImageSource source, IReadOnlyList<int> images, IReadOnlyList<ViewTransform?>? transforms, Func<IReadOnlyList<byte[]>, IReadOnlyList<ViewTransform?>?, Tensor> run,
        TrainingOptions options, ITrainingObserver observer, CancellationToken cancellation, Action<int, Tensor>? onRows = null)
    {
        var size = options.FeatureBatchSize;
        var batches = (images.Count + size - 1) / size;
        var rows = new List<Tensor>(batches);
        var clock = Stopwatch.StartNew();
        if (images.Count > 0) observer.OnProgress(new TrainingProgress(TrainingStage.ExtractingFeatures, 0, options.Epochs, 0, batches, 0, null, null));
        var b = 0;
        foreach (var batch in source.Batches(images, size, cancellation))
        {
            cancellation.ThrowIfCancellationRequested();
            rows.Add(run(batch, transforms?.Skip(b * size).Take(size).ToList()));
            onRows?.Invoke(b * size, rows[^1]);
            b++;
            var done = Math.Min(images.Count, b * size);
            var rate = done / clock.Elapsed.TotalSeconds;
            observer.OnProgress(new TrainingProgress(TrainingStage.ExtractingFeatures, 0, options.Epochs, b, batches,
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
