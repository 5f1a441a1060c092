using TorchSharp.Modules;
using TransferApi.Training.Checkpoints;
using static TorchSharp.torch;

namespace TransferApi.Training.Heads;

/// <summary>Labelled features a head trains on, and optionally validates on.</summary>
/// <param name="Classes">The number of classes (labels are their indices).</param>
public sealed record HeadTrainingSet(
    Tensor Features,
    Tensor Labels,
    Tensor? ValFeatures,
    Tensor? ValLabels,
    int Classes
);

/// <summary>Features of augmented views and, for each, the row of the image it is a view of.</summary>
public sealed record AugmentedRows(Tensor Features, long[] Source);

/// <param name="Interrupted">Cancellation arrived after at least one epoch: <see cref="Head"/> holds the best completed
/// epoch.</param>
public sealed record HeadTrainingResult(
    nn.Module<Tensor, Tensor> Head,
    IReadOnlyList<EpochMetrics> Metrics,
    int BestEpoch,
    bool StoppedEarly,
    bool Interrupted = false
);

/// <summary>
/// Trains a head on cached backbone features (the backbone is never touched here): the chosen optimizer,
/// learning-rate schedule, label smoothing, class weights and early stopping that restores the best epoch.
/// Cancellation is checked every batch: a checkpoint of the epoch in progress is reported, then, once an epoch
/// has completed, training ends with the best weights so far instead of throwing, so a cancelled job can still
/// keep a usable model.
/// </summary>
public static class HeadTrainer
{
    /// <summary>L-BFGS iterations in one epoch of <see cref="OptimizerKind.Lbfgs"/> (PyTorch's default per
    /// step).</summary>
    public const int LbfgsIterationsPerEpoch = 20;

    public static HeadTrainingResult Train(HeadTrainingSet data, EpochLoop loop)
    {
        if (loop.Options.Optimizer == OptimizerKind.Lbfgs)
            return LbfgsHead.Train(data, loop);
        var (trainFeatures, trainLabels, valFeatures, valLabels, classes) = data;
        var (options, onEpoch, onBatch, cancellation, resume, checkpoints) = loop;
        if (resume is not null && resume.Phase != TrainingPhase.Head)
            throw new ArgumentException("Not a head-phase checkpoint.", nameof(loop));
        var hasValidation = valFeatures is not null && valLabels is not null && valFeatures.shape[0] > 0;
        var head = ClassifierHead.Create(options.Head, (int)trainFeatures.shape[1], classes, options.Seed);
        using var classWeights = options.ClassWeighted ? BalancedWeights(trainLabels, classes) : null;
        var parameters = head.parameters().Where(p => p.requires_grad).ToList();
        using var optimizer = CreateOptimizer(parameters, options);
        var count = trainFeatures.shape[0];
        var batches = Batches(count, options.BatchSize);
        var scheduler = CreateScheduler(optimizer, options, batches);
        var stepPerBatch = options.Schedule == LrSchedule.OneCycle;

        var metrics = new List<EpochMetrics>();
        var best = new BestHead(options.EarlyStopping is { } early && hasValidation ? early : null);
        var partial = resume?.InProgress;
        if (resume is not null)
        {
            ModelCheckpoint.Load(head, resume.HeadWeights);
            // Schedules are pure functions of their step count: replay them, then restore the optimizer.
            var steps = stepPerBatch ? resume.Epoch * batches + (partial?.BatchesDone ?? 0) : resume.Epoch;
            for (var s = 0; s < steps; s++)
                scheduler?.step();
            TrainingCheckpoint.LoadOptimizer(optimizer, resume.OptimizerState);
            metrics.AddRange(resume.Metrics);
            best.Restore(resume.Best, resume.HeadWeights);
        }
        var interrupted = false;
        for (var epoch = metrics.Count + 1; epoch <= options.Epochs && !best.StopsTraining; epoch++)
        {
            head.train();
            var learningRate = partial?.LearningRate ?? optimizer.ParamGroups.First().LearningRate;
            var progress = partial ?? new EpochInProgress(0, 0, learningRate);
            progress = RunEpochPausing(
                head,
                count,
                epoch,
                stream: 0,
                progress,
                index =>
                {
                    optimizer.zero_grad();
                    var loss = nn.functional.cross_entropy(
                        head.call(trainFeatures.index_select(0, index)),
                        trainLabels.index_select(0, index),
                        weight: classWeights,
                        label_smoothing: options.LabelSmoothing
                    );
                    loss.backward();
                    optimizer.step();
                    if (stepPerBatch)
                        scheduler?.step();
                    return loss;
                },
                loop,
                // Before the first batch of the first epoch there is nothing worth resuming from.
                soFar =>
                    soFar.BatchesDone == 0 && metrics.Count == 0
                        ? null
                        : new TrainingCheckpoint(
                            "",
                            TrainingPhase.Head,
                            epoch - 1,
                            metrics.ToList(),
                            ModelCheckpoint.Save(head),
                            null,
                            TrainingCheckpoint.SaveOptimizer(optimizer),
                            best.ToSaved(weightsInCheckpoint: false),
                            null,
                            soFar
                        )
            );
            partial = null;
            if (progress.BatchesDone < batches)
            {
                if (metrics.Count == 0)
                    cancellation.ThrowIfCancellationRequested();
                interrupted = true;
                break;
            }
            if (!stepPerBatch)
                scheduler?.step();
            var (valLoss, valAccuracy) = hasValidation
                ? Evaluate(head, valFeatures!, valLabels!)
                : ((double?)null, (double?)null);
            var epochMetrics = new EpochMetrics(epoch, progress.LossSum / count, valLoss, valAccuracy, learningRate);
            metrics.Add(epochMetrics);
            onEpoch(epochMetrics);

            var isBest = best.Observe(epoch, valLoss, valAccuracy, head);
            if (checkpoints?.IsDue() == true)
                checkpoints.Save(
                    new TrainingCheckpoint(
                        "",
                        TrainingPhase.Head,
                        epoch,
                        metrics.ToList(),
                        isBest ? best.Weights! : ModelCheckpoint.Save(head),
                        null,
                        TrainingCheckpoint.SaveOptimizer(optimizer),
                        best.ToSaved(weightsInCheckpoint: isBest),
                        null
                    )
                );
        }
        return best.Finish(head, metrics, options.Epochs, interrupted);
    }

    /// <summary>
    /// The best epoch so far and its weights, which early stopping and cancellation return to. With early stopping,
    /// best by the monitored metric (improving by more than its minDelta); without, simply the latest epoch.
    /// </summary>
    internal sealed class BestHead(EarlyStopping? stopping)
    {
        public byte[]? Weights { get; private set; }
        public int Epoch { get; private set; }
        private double score = double.NaN;
        private int sinceBest;

        public bool StopsTraining => stopping is not null && sinceBest >= stopping.Patience;

        public void Restore(BestSoFar saved, byte[] checkpointWeights)
        {
            // A checkpoint taken at the best epoch leaves the best weights to be the checkpoint's own.
            Weights = saved.Epoch == 0 ? null : saved.HeadWeights ?? checkpointWeights;
            (Epoch, score, sinceBest) = (saved.Epoch, saved.Score, saved.SinceBest);
        }

        /// <summary>Takes a finished epoch's validation; true when it is the new best (its weights are kept).</summary>
        public bool Observe(int epoch, double? valLoss, double? valAccuracy, nn.Module<Tensor, Tensor> head)
        {
            var epochScore =
                stopping is null ? double.NaN
                : stopping.Monitor == MonitoredMetric.ValLoss ? -valLoss!.Value
                : valAccuracy!.Value;
            if (stopping is null || double.IsNaN(score) || epochScore > score + stopping.MinDelta)
            {
                (Weights, Epoch, score, sinceBest) = (ModelCheckpoint.Save(head), epoch, epochScore, 0);
                return true;
            }
            sinceBest++;
            return false;
        }

        /// <summary>The head back at its best epoch, in evaluation mode, with what its training did.</summary>
        public HeadTrainingResult Finish(
            nn.Module<Tensor, Tensor> head,
            IReadOnlyList<EpochMetrics> metrics,
            int plannedEpochs,
            bool interrupted
        )
        {
            if (Weights is not null)
                ModelCheckpoint.Load(head, Weights);
            head.eval();
            return new HeadTrainingResult(
                head,
                metrics,
                Epoch,
                !interrupted && metrics.Count < plannedEpochs,
                interrupted
            );
        }

        /// <param name="weightsInCheckpoint">The checkpoint's own weights are the best: they are not stored
        /// twice.</param>
        public BestSoFar ToSaved(bool weightsInCheckpoint) =>
            new(Epoch, score, sinceBest, weightsInCheckpoint ? null : Weights, null);
    }

    internal static int Batches(long count, int batchSize) => (int)((count + batchSize - 1) / batchSize);

    /// <summary>
    /// The rest of one epoch from <paramref name="progress"/>: its batches (<see cref="RunEpoch"/>), paused whenever
    /// a checkpoint is due between two of them to save <paramref name="checkpointSoFar"/> (null: none worth saving),
    /// and ended early only by cancellation, after saving one. Shared by the head's and fine-tuning's loops.
    /// </summary>
    /// <returns>Where the epoch got to: all its batches unless cancelled.</returns>
    internal static EpochInProgress RunEpochPausing(
        nn.Module<Tensor, Tensor> head,
        long count,
        int epoch,
        int stream,
        EpochInProgress progress,
        Func<Tensor, Tensor> step,
        EpochLoop loop,
        Func<EpochInProgress, TrainingCheckpoint?> checkpointSoFar
    )
    {
        var batches = Batches(count, loop.Options.BatchSize);
        while (true)
        {
            var (done, lossSum) = RunEpoch(
                head,
                count,
                loop.Options,
                epoch,
                stream,
                progress,
                step,
                loop.OnBatch,
                loop.Cancellation,
                loop.Checkpoints?.IsDueMidEpoch
            );
            progress = progress with { BatchesDone = done, LossSum = lossSum };
            if (done == batches)
                return progress;
            if (loop.Checkpoints is { } sink && checkpointSoFar(progress) is { } checkpoint)
                sink.Save(checkpoint);
            if (loop.Cancellation.IsCancellationRequested)
                return progress;
        }
    }

    /// <summary>
    /// One epoch's batches in the epoch's seeded order, from where <paramref name="from"/> stopped (or the first),
    /// each with the head's dropout seeded for that batch. Stops between batches once cancellation is requested,
    /// or, after at least one batch, when <paramref name="pause"/> says so (a checkpoint is due).
    /// </summary>
    /// <param name="step">Applies one batch (the row indices) and returns its mean loss.</param>
    /// <returns>Batches of the epoch done (all unless cancelled) and their summed, size-weighted loss.</returns>
    internal static (int Done, double LossSum) RunEpoch(
        nn.Module<Tensor, Tensor> head,
        long count,
        TrainingOptions options,
        int epoch,
        int stream,
        EpochInProgress? from,
        Func<Tensor, Tensor> step,
        Action<int, int, int> onBatch,
        CancellationToken cancellation,
        Func<bool>? pause = null
    )
    {
        var batches = Batches(count, options.BatchSize);
        var (b, lossSum) = (from?.BatchesDone ?? 0, from?.LossSum ?? 0);
        var first = b;
        using var generator = new Generator(EpochSeed(options.Seed, epoch, stream));
        using var order = randperm(count, generator: generator);
        for (; b < batches && !cancellation.IsCancellationRequested && !(b > first && pause?.Invoke() == true); b++)
        {
            using var scope = NewDisposeScope();
            ClassifierHead.SeedBatch(head, options.Seed, epoch, b);
            var index = order.narrow(
                0,
                b * options.BatchSize,
                Math.Min(options.BatchSize, count - (long)b * options.BatchSize)
            );
            lossSum += step(index).item<float>() * index.shape[0];
            onBatch(epoch, b + 1, batches);
        }
        return (b, lossSum);
    }

    /// <summary>
    /// Logits [N, classes] of each image from a head that never saw it: stratified, seeded folds, one head per fold
    /// trained with <paramref name="options"/> (quietly, without validation) on the other folds.
    /// </summary>
    /// <param name="views">Augmented views of the images, each trained on only by the folds that train on its
    /// image (never scored).</param>
    public static Tensor OutOfFoldLogits(
        Tensor features,
        Tensor labels,
        int classes,
        int folds,
        TrainingOptions options,
        CancellationToken cancellation,
        AugmentedRows? views = null
    )
    {
        var truth = labels.data<long>().ToArray();
        var fold = StratifiedFolds(truth, folds, options.Seed);
        var logits = zeros(truth.Length, classes);
        for (var f = 0; f < folds; f++)
        {
            using var scope = NewDisposeScope();
            var held = tensor(
                Enumerable.Range(0, truth.Length).Where(i => fold[i] == f).Select(i => (long)i).ToArray()
            );
            var kept = tensor(
                Enumerable.Range(0, truth.Length).Where(i => fold[i] != f).Select(i => (long)i).ToArray()
            );
            if (held.shape[0] == 0 || kept.shape[0] == 0)
                continue;
            var (trainX, trainY) = (features.index_select(0, kept), labels.index_select(0, kept));
            if (views is not null)
            {
                var keptViews = Enumerable
                    .Range(0, views.Source.Length)
                    .Where(v => fold[views.Source[v]] != f)
                    .Select(v => (long)v)
                    .ToArray();
                var sources = tensor(keptViews.Select(v => views.Source[v]).ToArray());
                trainX = cat([trainX, views.Features.index_select(0, tensor(keptViews))], 0);
                trainY = cat([trainY, labels.index_select(0, sources)], 0);
            }
            var trained = Train(
                new HeadTrainingSet(trainX, trainY, null, null, classes),
                EpochLoop.Quiet(options with { EarlyStopping = null }, cancellation)
            );
            using var head = trained.Head;
            // A head cut short by cancellation would score as if trained: the caller hears of the cancellation.
            if (trained.Interrupted)
                cancellation.ThrowIfCancellationRequested();
            head.eval();
            using var noGradients = no_grad();
            logits.index_copy_(0, held, head.call(features.index_select(0, held)));
        }
        return logits;
    }

    /// <summary>Each image's fold: every class's images shuffled (seeded) and dealt round the folds in turn.</summary>
    public static int[] StratifiedFolds(IReadOnlyList<long> truth, int folds, long seed)
    {
        var random = new Random(unchecked((int)seed * 17 + 3));
        var fold = new int[truth.Count];
        foreach (var members in Enumerable.Range(0, truth.Count).GroupBy(i => truth[i]))
        {
            var shuffled = members.ToArray();
            random.Shuffle(shuffled);
            for (var k = 0; k < shuffled.Length; k++)
                fold[shuffled[k]] = k % folds;
        }
        return fold;
    }

    /// <summary>Mean cross-entropy and accuracy of the head on labelled features.</summary>
    public static (double Loss, double Accuracy) Evaluate(
        nn.Module<Tensor, Tensor> head,
        Tensor features,
        Tensor labels
    )
    {
        var wasTraining = head.training;
        head.eval();
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        var logits = head.call(features);
        var loss = nn.functional.cross_entropy(logits, labels).item<float>();
        var accuracy = logits.argmax(1).eq(labels).to_type(ScalarType.Float32).mean().item<float>();
        if (wasTraining)
            head.train();
        return (loss, accuracy);
    }

    internal static Tensor BalancedWeights(Tensor labels, int classes)
    {
        using var counts = bincount(labels, minlength: classes).to_type(ScalarType.Float32);
        return (labels.shape[0] / (classes * counts.clamp_min(1))).to_type(ScalarType.Float32);
    }

    /// <summary>The seed of one epoch's shuffling (and, mixed with the batch, of dropout masks): resuming needs no
    /// generator state.</summary>
    internal static ulong EpochSeed(long seed, int epoch, int stream = 0) =>
        unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)epoch * 1_000_003UL + (ulong)stream);

    private static OptimizerHelper CreateOptimizer(IEnumerable<Parameter> parameters, TrainingOptions options) =>
        options.Optimizer switch
        {
            OptimizerKind.AdamW => KeptAliveOptimizers.AdamW(parameters, options.LearningRate, options.WeightDecay),
            OptimizerKind.Sgd => KeptAliveOptimizers.Sgd(
                parameters,
                options.LearningRate,
                options.Momentum,
                options.WeightDecay
            ),
            _ => KeptAliveOptimizers.Adam(parameters, options.LearningRate, options.WeightDecay),
        };

    private static optim.lr_scheduler.LRScheduler? CreateScheduler(
        OptimizerHelper optimizer,
        TrainingOptions options,
        int batchesPerEpoch
    ) =>
        options.Schedule switch
        {
            LrSchedule.Step => optim.lr_scheduler.StepLR(
                optimizer,
                options.StepEpochs ?? Math.Max(1, options.Epochs / 3),
                options.StepGamma
            ),
            LrSchedule.Cosine => optim.lr_scheduler.CosineAnnealingLR(optimizer, options.Epochs),
            LrSchedule.OneCycle => optim.lr_scheduler.OneCycleLR(
                optimizer,
                options.LearningRate,
                total_steps: options.Epochs * batchesPerEpoch,
                cycle_momentum: options.Optimizer == OptimizerKind.Sgd && options.Momentum > 0
            ),
            _ => null,
        };
}
