using System.Diagnostics;
using TransferApi.Training.Backbones;
using TransferApi.Training.Checkpoints;
using TransferApi.Training.Evaluation;
using TransferApi.Training.FineTuning;
using TransferApi.Training.Heads;
using TransferApi.Training.Imaging;
using TransferApi.Training.Tuning;
using static TorchSharp.torch;

namespace TransferApi.Training;

/// <summary>
/// The recipe, in named phases: plan (validate, split, draw augmented views), extract (the backbone once over every
/// image, or for fine-tuning its frozen prefix once, into an activation store), train the head on the cached
/// features, fine-tune the last stages (optional), and evaluate on held-out images. One <see cref="Run"/> record
/// carries the run's inputs and decisions from phase to phase.
/// </summary>
public sealed class TransferLearningTrainer(Backbone backbone)
{
    /// <summary>What the backbone expects of its input images.</summary>
    public PreprocessingSpec Preprocessing => backbone.Preprocessor.Spec;

    /// <param name="resume">
    /// A checkpoint this job reported earlier (<see cref="ITrainingObserver.OnCheckpoint"/>): training continues after
    /// its epoch.
    /// </param>
    /// <param name="source">
    /// Where the images' bytes are read from, a batch at a time (default: <see cref="LabeledImage.Bytes"/>).
    /// </param>
    /// <param name="activationBudget">How much of fine-tuning's activations stay in memory (default: all).</param>
    /// <param name="searched">
    /// The recipe search this job already finished (<see cref="ITrainingObserver.OnTuned"/>), reused instead of
    /// searching again when the job resumes.
    /// </param>
    public TrainingResult Train(
        IReadOnlyList<LabeledImage> images,
        TrainingOptions options,
        ITrainingObserver observer,
        CancellationToken cancellation,
        TrainingCheckpoint? resume = null,
        IImageSource? source = null,
        ActivationBudget? activationBudget = null,
        TuningResult? searched = null
    )
    {
        var run = Plan(
            images,
            options,
            observer,
            resume,
            source ?? new InMemoryImageSource(images.Select(i => i.Bytes).ToList()),
            activationBudget ?? ActivationBudget.Unbounded,
            cancellation
        );
        using var scope = NewDisposeScope();
        using var extracted = options.UnfreezeStages == 0 ? ExtractFrozen(run) : ExtractForFineTuning(run);
        var rows = Arrange(run, extracted);
        var featurePass = extracted.Embedded > 0 ? extracted.Duration : TimeSpan.Zero;
        var tuning = Tune(run, rows, searched, featurePass);
        if (tuning is { Interrupted: false } && options.UnfreezeStages == 0 && options.Augmentation.Views == 0)
            (tuning, run, rows) = ConsiderViews(run, rows, tuning, extracted, featurePass);
        if (tuning is not null)
        {
            var tuned = tuning.ChosenRecipe.ApplyTo(run.Options);
            run = run with { Options = tuned, Progress = new ProgressMeter(observer, tuned) };
        }
        var headClock = Stopwatch.StartNew();
        // A search cancelled midway still leaves a model: the best candidate so far, trained (in seconds, on cached
        // features) past the cancellation, and the run ends as interrupted.
        var head =
            tuning?.Interrupted == true
                ? TrainHead(run with { Cancellation = CancellationToken.None }, rows, headClock) with
                {
                    Interrupted = true,
                }
                : TrainHead(run, rows, headClock);
        var fine = FineTune(run, extracted, rows, head, headClock);
        headClock.Stop();
        return Evaluate(run, extracted, rows, head, fine, headClock.Elapsed) with { Tuning = tuning };
    }

    /// <summary>
    /// The head's recipe chosen by cross-validation on the training images' own features (augmented views and the
    /// validation and test images are never read), when the options ask for a search; null otherwise. A search this
    /// job already finished is reused, and one it had begun continues from the candidates it scored.
    /// </summary>
    private static TuningResult? Tune(Run run, Rows rows, TuningResult? searched, TimeSpan featurePass)
    {
        if (run.Options.Tuning is not { } tuning)
            return null;
        tuning = tuning with { BudgetSeconds = tuning.BudgetFor(featurePass) };
        // A search over other images or options is not this run's to reuse.
        if (searched?.Fingerprint != run.Fingerprint)
            searched = null;
        if (searched is { Partial: false })
            return searched;
        var originals = run.TrainIdx.Length;
        var clock = Stopwatch.StartNew();
        var result = HeadSearch.Run(
            rows.TrainX.narrow(0, 0, originals),
            rows.TrainY.narrow(0, 0, originals),
            run.Labels.Count,
            run.Options,
            tuning,
            run.Cancellation,
            (soFar, planned) =>
            {
                run.Observer.OnTuned(soFar with { Fingerprint = run.Fingerprint });
                run.Progress.TuningCandidate(soFar.Candidates.Count, planned, clock.Elapsed);
            },
            searched?.Candidates
        ) with
        {
            Fingerprint = run.Fingerprint,
        };
        // A search cut short is, for a job resumed after a shutdown, one to continue.
        run.Observer.OnTuned(result.Interrupted ? result with { Partial = true } : result);
        return result;
    }

    /// <summary>
    /// Whether one augmented view of each training image helps the searched recipe (HeadSearch.WithViews), when
    /// what is left of the budget covers embedding them (at this job's backbone pace, or, with every feature cached,
    /// at the pace of a first batch of views) and scoring them; with views chosen, the run trains on them. A search
    /// reused from before only embeds the views it chose.
    /// </summary>
    private (TuningResult, Run, Rows) ConsiderViews(
        Run run,
        Rows rows,
        TuningResult tuning,
        Extracted extracted,
        TimeSpan featurePass
    )
    {
        var decided = tuning.Candidates.Any(c => c.Recipe.AugmentedViews > 0);
        if (decided && tuning.ChosenRecipe.AugmentedViews == 0)
            return (tuning, run, rows);
        var (viewOf, transforms) = Augment(
            run.TrainIdx,
            run.Options with
            {
                Augmentation = new AugmentationOptions(1),
            }
        );
        if (viewOf.Length == 0 || !run.Source.HasBytes(run.TrainIdx))
            return (tuning, run, rows);
        try
        {
            return TryViews(run, rows, tuning, extracted, featurePass, viewOf, transforms, decided);
        }
        catch (OperationCanceledException) when (!decided && run.Cancellation.IsCancellationRequested)
        {
            // As when cancelled during the search: the search's choice is kept and trained.
            return (
                tuning with
                {
                    Interrupted = true,
                    Warnings =
                    [
                        .. tuning.Warnings,
                        "Cancelled while trying augmented views; the search's choice was kept.",
                    ],
                },
                run,
                rows
            );
        }
    }

    /// <summary>Embeds the views (checking the budget after a first batch when the pace is unknown), scores them
    /// unless already decided, and attaches them to the run when chosen.</summary>
    private (TuningResult, Run, Rows) TryViews(
        Run run,
        Rows rows,
        TuningResult tuning,
        Extracted extracted,
        TimeSpan featurePass,
        int[] viewOf,
        ViewTransform?[] transforms,
        bool decided
    )
    {
        Tensor Embed(int from, int count) =>
            ExtractBatched(
                run.Source,
                viewOf[from..(from + count)],
                transforms[from..(from + count)],
                backbone.Forward,
                run.Options,
                run.Progress,
                run.Cancellation
            );
        var clock = Stopwatch.StartNew();
        var first = decided ? 0 : Math.Min(viewOf.Length, run.Options.FeatureBatchSize);
        var firstViews = Embed(0, first);
        if (!decided)
        {
            var perImage =
                extracted.Embedded > 0
                    ? extracted.Duration.TotalSeconds / extracted.Embedded
                    : clock.Elapsed.TotalSeconds / first;
            // Scoring trains on about twice the rows the chosen recipe's folds did.
            var expected = perImage * (viewOf.Length - first) + 2 * tuning.Candidates[tuning.Chosen].Seconds;
            var left = run.Options.Tuning!.BudgetFor(featurePass) - tuning.SecondsUsed - clock.Elapsed.TotalSeconds;
            if (expected > left)
                return (
                    tuning with
                    {
                        Warnings =
                        [
                            .. tuning.Warnings,
                            $"Augmented views were not tried: embedding a view of each of the {viewOf.Length} "
                                + $"training images and scoring them would take about {expected:0.#} s, beyond the "
                                + $"{Math.Max(0, left):0.#} s left of the budget.",
                        ],
                    },
                    run,
                    rows
                );
        }
        var views = first == viewOf.Length ? firstViews : cat([firstViews, Embed(first, viewOf.Length - first)], 0);
        if (!decided)
        {
            var rowOf = run.TrainIdx.Select((image, row) => (image, row)).ToDictionary(p => p.image, p => (long)p.row);
            var originals = run.TrainIdx.Length;
            tuning = HeadSearch.WithViews(
                tuning,
                rows.TrainX.narrow(0, 0, originals),
                rows.TrainY.narrow(0, 0, originals),
                run.Labels.Count,
                run.Options,
                new AugmentedRows(views, viewOf.Select(i => rowOf[i]).ToArray()),
                clock.Elapsed.TotalSeconds,
                run.Cancellation
            );
            run.Observer.OnTuned(tuning);
            if (tuning.ChosenRecipe.AugmentedViews == 0)
                return (tuning, run, rows);
        }
        return (
            tuning,
            run with
            {
                ViewOf = viewOf,
                ViewTransforms = transforms,
            },
            rows with
            {
                TrainX = cat([rows.TrainX, views], 0),
                TrainY = cat([rows.TrainY, run.LabelsOf(viewOf)], 0),
            }
        );
    }

    /// <summary>One run's inputs and the decisions taken before any image is read.</summary>
    /// <param name="ViewOf">For each augmented view, the training image it is a view of.</param>
    private sealed record Run(
        IReadOnlyList<LabeledImage> Images,
        TrainingOptions Options,
        ITrainingObserver Observer,
        TrainingCheckpoint? Resume,
        IImageSource Source,
        ActivationBudget Budget,
        ProgressMeter Progress,
        string Fingerprint,
        List<string> Labels,
        Dictionary<string, long> LabelIndex,
        int[] TrainIdx,
        int[] ValIdx,
        int[] TestIdx,
        int[] ViewOf,
        ViewTransform?[] ViewTransforms,
        CancellationToken Cancellation
    )
    {
        /// <summary>The images the run reads, in row order: training, validation, test.</summary>
        public int[] Used { get; } = [.. TrainIdx, .. ValIdx, .. TestIdx];

        public Tensor LabelsOf(IEnumerable<int> images) =>
            tensor(images.Select(i => LabelIndex[Images[i].Label]).ToArray());

        public List<int> ClassesOf(IEnumerable<int> images) =>
            images.Select(i => (int)LabelIndex[Images[i].Label]).ToList();
    }

    /// <summary>
    /// Every used image's (and view's) pooled features, and for fine-tuning the tail and the activations it trains
    /// on, which it owns.
    /// </summary>
    private sealed record Extracted(
        Tensor Features,
        Tensor ViewFeatures,
        FeatureTail? Tail,
        ActivationStore? Activations,
        TimeSpan Duration,
        int Embedded,
        int FromCache
    ) : IDisposable
    {
        public void Dispose()
        {
            Activations?.Dispose();
            Tail?.Dispose();
        }
    }

    /// <summary>The splits' features and labels, and their rows in the activation store.</summary>
    private sealed record Rows(
        Tensor TrainX,
        Tensor TrainY,
        Tensor ValX,
        Tensor ValY,
        Tensor TestX,
        long[] TrainRows,
        long[] ValRows,
        long[] HeldOutRows
    );

    /// <param name="HeldOutX">Validation and test features through the fine-tuned stages (null: not
    /// fine-tuned).</param>
    private sealed record FineTuneOutcome(
        IReadOnlyList<EpochMetrics> Metrics,
        bool Interrupted,
        int BestEpoch,
        int Stages,
        Tensor? HeldOutX
    );

    /// <summary>Validates the input and decides the classes, the splits and the augmented views.</summary>
    private Run Plan(
        IReadOnlyList<LabeledImage> images,
        TrainingOptions options,
        ITrainingObserver observer,
        TrainingCheckpoint? resume,
        IImageSource source,
        ActivationBudget budget,
        CancellationToken cancellation
    )
    {
        Validate(images, options);
        if (options.UnfreezeStages > backbone.Stages)
            throw new TrainingInputException(
                $"unfreezeStages must be between 0 and {backbone.Stages}: backbone "
                    + $"'{backbone.Id}' ({backbone.Architecture.Name}) has {backbone.Stages} stages."
            );
        var fingerprint = Fingerprint(images, options);
        if (resume is not null && resume.Fingerprint != fingerprint)
            throw new ArgumentException(
                "The checkpoint was made for other images, options or backbone.",
                nameof(resume)
            );
        var labels = images
            .Select(i => i.Label)
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal)
            .ToList();
        var labelIndex = labels.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => (long)p.i, StringComparer.Ordinal);
        var (trainIdx, valIdx) = DataSplitter.Split(images, options.ValidationFraction, options.Seed);
        var missing = labels.Where(l => !trainIdx.Any(i => images[i].Label == l)).ToList();
        if (missing.Count > 0)
            throw new TrainingInputException($"No training images left for class(es): {string.Join(", ", missing)}.");
        var testIdx = Enumerable.Range(0, images.Count).Where(i => images[i].Split == DataSplit.Test).ToArray();
        // Augmented views of the training images join the training rows; validation and test stay as they are.
        var (viewOf, transforms) = Augment(trainIdx, options);
        return new Run(
            images,
            options,
            observer,
            resume,
            source,
            budget,
            new ProgressMeter(observer, options),
            fingerprint,
            labels,
            labelIndex,
            trainIdx,
            valIdx,
            testIdx,
            viewOf,
            transforms,
            cancellation
        );
    }

    /// <summary>Frozen backbone: cached features as given, the other images and every view through it once.</summary>
    private Extracted ExtractFrozen(Run run)
    {
        var clock = Stopwatch.StartNew();
        var (features, embedded) = FrozenFeatures(run);
        var viewFeatures = ExtractBatched(
            run.Source,
            run.ViewOf,
            run.ViewTransforms,
            backbone.Forward,
            run.Options,
            run.Progress,
            run.Cancellation
        );
        return new Extracted(
            features,
            viewFeatures,
            null,
            null,
            clock.Elapsed,
            embedded + run.ViewOf.Length,
            run.Used.Length - embedded
        );
    }

    /// <summary>
    /// Fine-tuning needs, for every image and view, the activation entering the first unfrozen stage: the frozen
    /// prefix runs once, each batch going to the activation store; the pooled features for the head phase follow
    /// from the pretrained tail batch by batch.
    /// </summary>
    private Extracted ExtractForFineTuning(Run run)
    {
        var clock = Stopwatch.StartNew();
        var tail = backbone.CreateTail(run.Options.UnfreezeStages);
        tail.eval();
        var firstTrained = backbone.Stages - run.Options.UnfreezeStages;
        int[] rowImages = [.. run.Used, .. run.ViewOf];
        ViewTransform?[] rowTransforms = [.. run.Used.Select(_ => (ViewTransform?)null), .. run.ViewTransforms];
        ActivationStore? activations = null;
        Tensor Recompute(long[] rows)
        {
            var bytes = run
                .Source.Batches(rows.Select(r => rowImages[r]).ToList(), rows.Length, run.Cancellation)
                .Single();
            var rowViews = rows.Select(r => rowTransforms[r]).ToList();
            return backbone.Activations(bytes, firstTrained, rowViews.Any(t => t is not null) ? rowViews : null);
        }
        Tensor Pooled(Tensor pixels)
        {
            // The tail's intermediate tensors die with the batch, not with the job.
            using var batchScope = NewDisposeScope();
            var activation = backbone.Activations(pixels, firstTrained);
            if (activations is null)
            {
                activations = ActivationStore.Create(rowImages.Length, activation.shape[1..], run.Budget, Recompute);
                run.Observer.OnActivations(
                    new ActivationUsage(activations.Storage, activations.Bytes, run.Budget.MemoryBytes)
                );
            }
            activations.Append(activation);
            using var mode = inference_mode();
            return tail.call(activation).clone().MoveToOuterDisposeScope();
        }
        try
        {
            var features = ExtractBatched(
                run.Source,
                run.Used,
                null,
                Pooled,
                run.Options,
                run.Progress,
                run.Cancellation
            );
            var viewFeatures = ExtractBatched(
                run.Source,
                run.ViewOf,
                run.ViewTransforms,
                Pooled,
                run.Options,
                run.Progress,
                run.Cancellation
            );
            return new Extracted(features, viewFeatures, tail, activations, clock.Elapsed, rowImages.Length, 0);
        }
        catch
        {
            activations?.Dispose();
            tail.Dispose();
            throw;
        }
    }

    /// <summary>Cuts the features into splits, with the views after the training images.</summary>
    private static Rows Arrange(Run run, Extracted extracted)
    {
        var (train, val, test) = (run.TrainIdx.Length, run.ValIdx.Length, run.TestIdx.Length);
        var trainX = extracted.Features.narrow(0, 0, train);
        if (run.ViewOf.Length > 0)
            trainX = cat([trainX, extracted.ViewFeatures], 0);
        // Rows of the activation store: the used images in order (train, validation, test), then the views.
        long[] Range(long from, int count) => Enumerable.Range(0, count).Select(k => from + k).ToArray();
        return new Rows(
            trainX,
            run.LabelsOf(run.TrainIdx.Concat(run.ViewOf)),
            extracted.Features.narrow(0, train, val),
            run.LabelsOf(run.ValIdx),
            extracted.Features.narrow(0, train + val, test),
            [.. Range(0, train), .. Range(train + val + test, run.ViewOf.Length)],
            Range(train, val),
            Range(train, val + test)
        );
    }

    /// <summary>The head on the cached features; a run resumed after the head phase rebuilds its outcome.</summary>
    private HeadTrainingResult TrainHead(Run run, Rows rows, Stopwatch clock)
    {
        var options = run.Options;
        if (run.Resume?.HeadPhase is { } headDone)
            // The head phase had ended: fine-tuning's checkpoint carries the head's weights.
            return new HeadTrainingResult(
                ClassifierHead.Create(options.Head, backbone.FeatureSize, run.Labels.Count, options.Seed),
                run.Resume.Metrics.Where(m => m.Epoch <= headDone.Epochs).ToList(),
                headDone.BestEpoch,
                headDone.StoppedEarly
            );
        var validates = run.ValIdx.Length > 0;
        return HeadTrainer.Train(
            new HeadTrainingSet(
                rows.TrainX,
                rows.TrainY,
                validates ? rows.ValX : null,
                validates ? rows.ValY : null,
                run.Labels.Count
            ),
            new EpochLoop(
                options,
                run.Observer.OnEpochCompleted,
                run.Progress.HeadEpochs(clock),
                run.Cancellation,
                run.Resume,
                CheckpointSink.For(run.Observer, checkpoint => checkpoint with { Fingerprint = run.Fingerprint })
            )
        );
    }

    /// <summary>The last stages with the head, when the options unfreeze any and the head phase was not
    /// interrupted.</summary>
    private static FineTuneOutcome FineTune(
        Run run,
        Extracted extracted,
        Rows rows,
        HeadTrainingResult head,
        Stopwatch clock
    )
    {
        if (extracted.Tail is not { } tail || head.Interrupted)
            return new FineTuneOutcome([], head.Interrupted, head.BestEpoch, 0, null);
        var options = run.Options;
        var headEpochs = head.Metrics.Count;
        var headPhase = new HeadPhaseOutcome(headEpochs, head.BestEpoch, head.StoppedEarly);
        var validates = run.ValIdx.Length > 0;
        var fine = FineTuner.Train(
            new FineTuningSet(
                tail,
                head.Head,
                extracted.Activations!,
                rows.TrainRows,
                rows.TrainY,
                validates ? rows.ValRows : null,
                validates ? rows.ValY : null,
                headEpochs + 1
            ),
            new EpochLoop(
                options,
                run.Observer.OnEpochCompleted,
                run.Progress.FineTuningEpochs(headEpochs, clock),
                run.Cancellation,
                run.Resume?.HeadPhase is null ? null : run.Resume,
                CheckpointSink.For(run.Observer, checkpoint =>
                    checkpoint with
                    {
                        Fingerprint = run.Fingerprint,
                        HeadPhase = headPhase,
                        Metrics = [.. head.Metrics, .. checkpoint.Metrics],
                    }
                )
            )
        );
        if (!fine.Improved)
            return new FineTuneOutcome(fine.Metrics, fine.Interrupted, head.BestEpoch, 0, null);
        // Held-out images now go through the fine-tuned stages.
        var heldOut = FineTuner.PooledFeatures(
            tail,
            extracted.Activations!,
            rows.HeldOutRows,
            options.FeatureBatchSize
        );
        return new FineTuneOutcome(fine.Metrics, fine.Interrupted, fine.BestEpoch, options.UnfreezeStages, heldOut);
    }

    /// <summary>
    /// The final word on the model: calibration, novelty and per-class thresholds from held-out images, and the
    /// report on the test split when the data set has one, else validation. An interrupted run's progress stays where
    /// it stopped.
    /// </summary>
    private TrainingResult Evaluate(
        Run run,
        Extracted extracted,
        Rows rows,
        HeadTrainingResult head,
        FineTuneOutcome fine,
        TimeSpan training
    )
    {
        var clock = Stopwatch.StartNew();
        var metrics = head.Metrics.Concat(fine.Metrics).ToList();
        if (!fine.Interrupted)
            run.Progress.Evaluating(metrics.Count);
        var (valX, testX) = fine.HeldOutX is { } heldOut
            ? (heldOut.narrow(0, 0, run.ValIdx.Length), heldOut.narrow(0, run.ValIdx.Length, run.TestIdx.Length))
            : (rows.ValX, rows.TestX);
        var (evalSplit, evalX, evalIdx) =
            run.TestIdx.Length > 0 ? ("test", testX, run.TestIdx) : ("validation", valX, run.ValIdx);
        head.Head.eval();
        var calibration = Calibrate(run, rows, head, valX, fine.Interrupted);
        var temperature = calibration?.Temperature ?? 1;
        var novelty = FitNovelty(run, extracted, rows, fine, valX);
        ClassificationReport? report = null;
        List<EvaluatedImage>? evaluated = null;
        if (evalIdx.Length > 0)
        {
            var probabilities = Probabilities(head.Head, evalX, temperature);
            var truth = run.ClassesOf(evalIdx);
            report = ClassificationReport.Compute(evalSplit, run.Labels, probabilities, truth);
            double[]? scores = null;
            if (novelty is not null)
            {
                using var bank = novelty.BankTensor();
                scores = novelty.Score(bank, evalX);
            }
            evaluated = EvaluatedImages(run, evalIdx, probabilities, truth, scores);
        }
        var (thresholdSplit, thresholdX, thresholdIdx) =
            run.ValIdx.Length > 0 ? ("validation", valX, run.ValIdx) : (evalSplit, evalX, evalIdx);
        ThresholdReport? thresholds = null;
        if (thresholdIdx.Length > 0)
            thresholds = new ThresholdReport(
                thresholdSplit,
                run.Options.TargetPrecision,
                ClassThresholds.Compute(
                    run.Labels,
                    Probabilities(head.Head, thresholdX, temperature),
                    run.ClassesOf(thresholdIdx),
                    run.Options.TargetPrecision
                )
            );
        var checkpoint = ModelCheckpoint.FromHead(
            backbone.Id,
            backbone.Preprocessor.Spec,
            run.Labels,
            backbone.FeatureSize,
            run.Options.Head,
            head.Head
        ) with
        {
            FineTunedStages = fine.Stages,
            TailWeights = fine.Stages > 0 ? ModelCheckpoint.Save(extracted.Tail!) : null,
            Temperature = temperature,
            Novelty = novelty,
            Thresholds = thresholds?.Classes.Select(c => c.Recommended).ToList(),
        };
        head.Head.Dispose();
        if (!fine.Interrupted)
            run.Progress.Done(metrics.Count);
        var activations = extracted.Activations is { } store
            ? new ActivationUsage(store.Storage, store.Bytes, run.Budget.MemoryBytes)
            : null;
        return new TrainingResult(
            checkpoint,
            metrics,
            new TrainingTimings(extracted.Duration, training, extracted.Embedded, extracted.FromCache, clock.Elapsed),
            run.TrainIdx.Length,
            run.ValIdx.Length,
            fine.BestEpoch,
            head.StoppedEarly,
            fine.Interrupted,
            report,
            fine.Stages,
            activations,
            calibration,
            thresholds,
            evaluated
        );
    }

    /// <summary>
    /// Temperature scaling of the final head's logits: on the validation images when there are at least <see
    /// cref="MinHeldOutImages"/>, else on out-of-fold logits of heads trained like this one on folds of the training
    /// features (a fine-tuned model's frozen-backbone stand-in); none for an interrupted run without validation.
    /// </summary>
    private static Calibration? Calibrate(Run run, Rows rows, HeadTrainingResult head, Tensor valX, bool interrupted)
    {
        if (run.ValIdx.Length >= MinHeldOutImages)
        {
            using var mode = inference_mode();
            using var logits = head.Head.call(valX);
            return TemperatureScaling.Fit(TensorRows.Of(logits), run.ClassesOf(run.ValIdx), "validation");
        }
        if (interrupted || run.TrainIdx.Length < CalibrationFolds * 2)
            return null;
        using var scope = NewDisposeScope();
        var options = run.Options with { Epochs = Math.Max(1, head.BestEpoch) };
        var outOfFold = HeadTrainer.OutOfFoldLogits(
            rows.TrainX.narrow(0, 0, run.TrainIdx.Length),
            run.LabelsOf(run.TrainIdx),
            run.Labels.Count,
            CalibrationFolds,
            options,
            run.Cancellation
        );
        return TemperatureScaling.Fit(TensorRows.Of(outOfFold), run.ClassesOf(run.TrainIdx), "cross-validation");
    }

    /// <summary>The novelty model on the training images' features as the head sees them (views left out), its
    /// threshold's reference from validation when it has enough images.</summary>
    private static NoveltyModel? FitNovelty(Run run, Extracted extracted, Rows rows, FineTuneOutcome fine, Tensor valX)
    {
        if (run.TrainIdx.Length < 2)
            return null;
        using var scope = NewDisposeScope();
        var training =
            fine.Stages > 0
                ? FineTuner.PooledFeatures(
                    extracted.Tail!,
                    extracted.Activations!,
                    rows.TrainRows[..run.TrainIdx.Length],
                    run.Options.FeatureBatchSize
                )
                : rows.TrainX.narrow(0, 0, run.TrainIdx.Length);
        return NoveltyModel.Fit(training, run.ValIdx.Length >= MinHeldOutImages ? valX : null, run.Options.Seed);
    }

    /// <summary>Every evaluated image's outcome under the calibrated probabilities, worst loss first.</summary>
    private static List<EvaluatedImage> EvaluatedImages(
        Run run,
        int[] evalIdx,
        List<float[]> probabilities,
        List<int> truth,
        double[]? novelty
    ) =>
        evalIdx
            .Select(
                (image, n) =>
                {
                    var p = probabilities[n];
                    var predicted = Array.IndexOf(p, p.Max());
                    return new EvaluatedImage(
                        image,
                        run.Labels[truth[n]],
                        run.Labels[predicted],
                        p[predicted],
                        -Math.Log(Math.Max(p[truth[n]], 1e-15)),
                        novelty?[n]
                    );
                }
            )
            .OrderByDescending(e => e.Loss)
            .ThenBy(e => e.Image)
            .ToList();

    /// <summary>Held-out images needed to calibrate and set the novelty threshold on them rather than on training
    /// images (out-of-fold).</summary>
    public const int MinHeldOutImages = 30;

    private const int CalibrationFolds = 5;

    /// <summary>What a checkpoint of this job must match: the backbone, the options and every image in order.</summary>
    public string Fingerprint(IReadOnlyList<LabeledImage> images, TrainingOptions options) =>
        TrainingCheckpoint.FingerprintOf(backbone.Id, images, options);

    /// <summary>
    /// Each training image <see cref="TrainingOptions.Augmentation"/>.Views times, with seeded random transforms.
    /// </summary>
    private static (int[] Images, ViewTransform?[] Transforms) Augment(int[] trainIdx, TrainingOptions options)
    {
        var random = new Random(unchecked((int)options.Seed * 31 + 7));
        var images = Enumerable.Range(0, options.Augmentation.Views).SelectMany(_ => trainIdx).ToArray();
        return (images, images.Select(_ => (ViewTransform?)ViewTransform.Draw(random, options.Augmentation)).ToArray());
    }

    /// <summary>Pooled features of the run's used images, in row order.</summary>
    private (Tensor Features, int Embedded) FrozenFeatures(Run run) =>
        FrozenFeatures(
            run.Images.Select(i => new ImageToEmbed(i.ContentKey, i.Features)).ToList(),
            run.Used,
            run.Source,
            run.Options,
            run.Progress,
            run.Observer,
            run.Cancellation
        );

    /// <summary>
    /// Frozen-backbone features [N, F] of every image, in order: cached ones as given, the rest read from
    /// <paramref name="source"/> and through the backbone once, each batch reported to <paramref name="observer"/> as
    /// computed (to be cached) as soon as it exists. Progress is reported as feature extraction.
    /// </summary>
    public Tensor Embed(
        IReadOnlyList<ImageToEmbed> images,
        IImageSource source,
        ITrainingObserver observer,
        CancellationToken cancellation
    )
    {
        var options = new TrainingOptions();
        var (features, _) = FrozenFeatures(
            images,
            Enumerable.Range(0, images.Count).ToArray(),
            source,
            options,
            new ProgressMeter(observer, options),
            observer,
            cancellation
        );
        return features;
    }

    private (Tensor Features, int Embedded) FrozenFeatures(
        IReadOnlyList<ImageToEmbed> images,
        int[] used,
        IImageSource source,
        TrainingOptions options,
        ProgressMeter progress,
        ITrainingObserver observer,
        CancellationToken cancellation
    )
    {
        var size = backbone.FeatureSize;
        var toEmbed = used.Where(i => images[i].Features is null).ToArray();
        float[] computed = [];
        if (toEmbed.Length > 0)
        {
            void Report(int first, Tensor rows)
            {
                var values = rows.data<float>().ToArray();
                observer.OnFeaturesComputed(
                    Enumerable
                        .Range(0, (int)rows.shape[0])
                        .Where(k => images[toEmbed[first + k]].ContentKey is not null)
                        .Select(k => new ComputedFeatures(
                            images[toEmbed[first + k]].ContentKey!,
                            values.AsSpan(k * size, size).ToArray()
                        ))
                        .ToList()
                );
            }
            using var embedded = ExtractBatched(
                source,
                toEmbed,
                null,
                backbone.Forward,
                options,
                progress,
                cancellation,
                Report
            );
            computed = embedded.data<float>().ToArray();
        }
        var row = toEmbed
            .Select((image, k) => (image, k))
            .ToDictionary(p => p.image, p => computed.AsSpan(p.k * size, size).ToArray());
        var allValues = used.SelectMany(i => images[i].Features ?? row[i]).ToArray();
        if (allValues.Length != used.Length * size)
            throw new TrainingInputException(
                $"Cached features do not match backbone '{backbone.Id}' ({size} values per image)."
            );
        return (tensor(allValues, [used.Length, size]), toEmbed.Length);
    }

    /// <summary>Calibrated class probabilities of each row of <paramref name="features"/>.</summary>
    private static List<float[]> Probabilities(nn.Module<Tensor, Tensor> head, Tensor features, double temperature)
    {
        using var mode = inference_mode();
        using var logits = head.call(features);
        using var probabilities = nn.functional.softmax(logits / temperature, 1);
        return TensorRows.Of(probabilities);
    }

    /// <summary>Features [N, F] of the images in order, each image through the backbone exactly once.</summary>
    public Tensor ExtractFeatures(
        IReadOnlyList<byte[]> images,
        TrainingOptions options,
        ITrainingObserver observer,
        CancellationToken cancellation
    ) =>
        ExtractBatched(
            new InMemoryImageSource(images),
            Enumerable.Range(0, images.Count).ToList(),
            null,
            backbone.Forward,
            options,
            new ProgressMeter(observer, options),
            cancellation
        );

    /// <summary>
    /// Runs <paramref name="forward"/> over the preprocessed images (and their transforms) in batches read from
    /// <paramref name="source"/>, reporting progress, and stacks the results. The next batch is read and decoded
    /// while this one goes through the network; only the batches in flight (at most three) are held at a time.
    /// </summary>
    /// <param name="onRows">Called with each batch's first image index and its rows.</param>
    private Tensor ExtractBatched(
        IImageSource source,
        IReadOnlyList<int> images,
        IReadOnlyList<ViewTransform?>? transforms,
        Func<Tensor, Tensor> forward,
        TrainingOptions options,
        ProgressMeter progress,
        CancellationToken cancellation,
        Action<int, Tensor>? onRows = null
    )
    {
        var size = options.FeatureBatchSize;
        var batches = (images.Count + size - 1) / size;
        var rows = new List<Tensor>(batches);
        var clock = Stopwatch.StartNew();
        if (images.Count > 0)
            progress.ExtractionStarted(batches);
        var b = 0;
        var decoded = DecodeAhead.Batches(
            backbone.Preprocessor,
            stop => source.Batches(images, size, stop),
            index => transforms?.Skip(index * size).Take(size).ToList(),
            DecodeAhead.MaxDecoders(get_num_threads()),
            cancellation
        );
        foreach (var batch in decoded)
        {
            cancellation.ThrowIfCancellationRequested();
            using (var pixels = backbone.Preprocessor.FromPlanar(batch.Pixels, batch.Count))
                rows.Add(forward(pixels));
            onRows?.Invoke(b * size, rows[^1]);
            b++;
            progress.ExtractionBatch(b, batches, Math.Min(images.Count, b * size), images.Count, clock.Elapsed);
        }
        var features = rows.Count == 0 ? zeros(0, backbone.FeatureSize) : cat(rows, 0);
        foreach (var row in rows)
            row.Dispose();
        return features;
    }

    private static void Validate(IReadOnlyList<LabeledImage> images, TrainingOptions options)
    {
        if (options.Problems() is { Count: > 0 } problems)
            throw new TrainingInputException(string.Join(" ", problems.Select(p => p.Message)));
        var classes = images
            .Where(i => i.Split != DataSplit.Test)
            .Select(i => i.Label)
            .Distinct(StringComparer.Ordinal)
            .Count();
        if (classes < 2)
            throw new TrainingInputException(
                $"Training needs at least 2 classes with images; the data set has {classes}."
            );
    }
}
