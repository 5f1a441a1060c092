using System.Diagnostics;
using TransferApi.Training.Evaluation;
using TransferApi.Training.Heads;
using static TorchSharp.torch;

namespace TransferApi.Training.Tuning;

public enum TuningMetric
{
    LogLoss,
    Accuracy,
    MacroF1,
}

/// <summary>How a job searches its head's recipe (null on a job: it keeps the recipe it was given).</summary>
/// <param name="BudgetSeconds">Wall time the search may take; it stops before a candidate that would not fit.</param>
/// <param name="Folds">Stratified folds of the training images each candidate is cross-validated on.</param>
/// <param name="Metric">What chooses: mean held-out log loss (default), accuracy or macro F1.</param>
/// <param name="FitToFeaturePass">The budget was not chosen by the caller: a job that computes features spends at
/// most <see cref="FeaturePassShare"/> of that pass's time (at least <see cref="MinFittedBudgetSeconds"/>)
/// searching, so the search adds at most half to a cold job.</param>
public sealed record TuningOptions(
    double BudgetSeconds = 30,
    int Folds = 5,
    TuningMetric Metric = TuningMetric.LogLoss,
    bool FitToFeaturePass = false
)
{
    public const double MaxBudgetSeconds = 3600;
    public const double FeaturePassShare = 0.5;
    public const double MinFittedBudgetSeconds = 5;

    /// <summary>The budget of a job whose feature pass took <paramref name="featurePass"/> (zero: all
    /// cached).</summary>
    public double BudgetFor(TimeSpan featurePass) =>
        FitToFeaturePass && featurePass > TimeSpan.Zero
            ? Math.Min(BudgetSeconds, Math.Max(MinFittedBudgetSeconds, FeaturePassShare * featurePass.TotalSeconds))
            : BudgetSeconds;

    public IEnumerable<(string Field, string Message)> Problems()
    {
        if (!(BudgetSeconds > 0 && BudgetSeconds <= MaxBudgetSeconds))
            yield return (
                "tuning.budgetSeconds",
                $"tuning.budgetSeconds must be above 0 and at most {MaxBudgetSeconds}."
            );
        if (Folds is < 2 or > 20)
            yield return ("tuning.folds", "tuning.folds must be between 2 and 20.");
        if (!Enum.IsDefined(Metric))
            yield return ("tuning.metric", "tuning.metric must be LogLoss, Accuracy or MacroF1.");
    }
}

/// <summary>The head recipe a search varies; everything else stays as the job's options say.</summary>
/// <param name="AugmentedViews">Augmented views of each training image trained on with it (default augmentation);
/// 0 keeps the job's own augmentation options.</param>
public sealed record HeadRecipe(
    HeadKind Head,
    OptimizerKind Optimizer,
    double LearningRate,
    double WeightDecay,
    int Epochs,
    double LabelSmoothing,
    bool ClassWeighted,
    int AugmentedViews = 0
)
{
    public static HeadRecipe Of(TrainingOptions options) =>
        new(
            options.Head.Kind,
            options.Optimizer,
            options.LearningRate,
            options.WeightDecay,
            options.Epochs,
            options.LabelSmoothing,
            options.ClassWeighted
        );

    public TrainingOptions ApplyTo(TrainingOptions options) =>
        options with
        {
            Head = options.Head with { Kind = Head },
            Optimizer = Optimizer,
            LearningRate = LearningRate,
            WeightDecay = WeightDecay,
            Epochs = Epochs,
            LabelSmoothing = LabelSmoothing,
            ClassWeighted = ClassWeighted,
            Augmentation = AugmentedViews > 0 ? new Imaging.AugmentationOptions(AugmentedViews) : options.Augmentation,
        };
}

/// <param name="Score">Mean of the metric over the folds (log loss: lower is better; the others higher).</param>
/// <param name="Std">Its standard deviation over the folds.</param>
public sealed record TuningCandidate(HeadRecipe Recipe, double Score, double Std, double Seconds);

/// <param name="Chosen">Index of the winner in <see cref="Candidates"/>.</param>
/// <param name="Folds">Folds actually used (fewer than asked when a class is too small).</param>
/// <param name="Warnings">What the search had to change or skip, in plain words.</param>
public sealed record TuningResult(
    IReadOnlyList<TuningCandidate> Candidates,
    int Chosen,
    int Folds,
    TuningMetric Metric,
    double SecondsUsed,
    bool BudgetExhausted,
    IReadOnlyList<string> Warnings
)
{
    /// <summary>Cancellation stopped the search: <see cref="Chosen"/> is the best of the candidates it
    /// finished.</summary>
    public bool Interrupted { get; init; }

    /// <summary>A report while the search runs (the candidates so far): a job stopped then resumes the search from
    /// them.</summary>
    public bool Partial { get; init; }

    /// <summary>The run's images and options it searched for (<see cref="TransferLearningTrainer.Fingerprint"/>): a
    /// resumed job reuses the search only when they are the same.</summary>
    public string? Fingerprint { get; init; }

    public HeadRecipe ChosenRecipe => Candidates[Chosen].Recipe;
}

/// <summary>
/// Chooses a head's recipe by stratified k-fold cross-validation on the training features only (validation and
/// test images are never read: they stay for the honest final score). In this order, each candidate scored on the
/// same folds: the job's own recipe; the converged linear probe (<see cref="OptimizerKind.Lbfgs"/>) over a log grid
/// of L2 strengths; a coordinate search of the mini-batch recipe from the job's (learning rate, then epochs, each
/// swept with the other held at the best so far); label smoothing and, when classes are
/// imbalanced, class weights on the best so far; and an MLP head with the best mini-batch recipe. The budget is
/// checked before every candidate, so the cheap, usually strongest candidates come first. Seeded folds and heads:
/// the same features and options choose the same recipe.
/// </summary>
public static class HeadSearch
{
    /// <summary>Imbalance (largest over smallest class) above which class weighting is tried.</summary>
    public const double ImbalanceForClassWeights = 1.5;

    /// <summary>L-BFGS rounds of <see cref="HeadTrainer.LbfgsIterationsPerEpoch"/> iterations a probe may take: it
    /// stops once converged, in 5-17 rounds on the shared photos.</summary>
    public const int ProbeEpochs = 25;

    // L2 strengths of the linear probe: four decades, half a decade apart. On the shared photos the held-out optimum
    // was 3e-4 (cats vs dogs, 37 breeds) to 0.3 (ants-bees).
    private static readonly double[] ProbePenalties = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1];

    // The mini-batch axes, swept in this order.
    private static readonly double[] LearningRates = [3e-4, 1e-3, 3e-3, 1e-2];
    private static readonly int[] EpochCounts = [10, 30, 60];
    private static readonly double[] LabelSmoothings = [0, 0.1];
    private static readonly bool[] ClassWeightings = [false, true];

    public static TuningResult Run(
        Tensor features,
        Tensor labels,
        int classes,
        TrainingOptions options,
        TuningOptions tuning,
        CancellationToken cancellation,
        Action<TuningResult, int>? onCandidate = null,
        IReadOnlyList<TuningCandidate>? known = null
    )
    {
        var clock = Stopwatch.StartNew();
        // Candidates a stopped run of this same search finished: their scores and seconds are taken as they were.
        var reusable = (known ?? []).ToDictionary(c => c.Recipe);
        var reusedSeconds = 0.0;
        double Elapsed() => clock.Elapsed.TotalSeconds + reusedSeconds;
        var truth = labels.data<long>().ToArray();
        var counts = Enumerable.Range(0, classes).Select(c => truth.Count(t => t == c)).ToArray();
        var present = counts.Where(c => c > 0).ToArray();
        var warnings = new List<string>();
        var folds = Math.Min(tuning.Folds, present.Min());
        if (folds < tuning.Folds)
            warnings.Add(
                $"The smallest class has {present.Min()} training image(s): cross-validated on {folds} folds instead "
                    + $"of {tuning.Folds}."
            );
        var start = HeadRecipe.Of(options);
        if (folds < 2)
        {
            warnings.Add("A class has a single training image: nothing to cross-validate; the recipe is unchanged.");
            return new TuningResult(
                [new TuningCandidate(start, double.NaN, 0, 0)],
                0,
                folds,
                tuning.Metric,
                0,
                false,
                warnings
            );
        }
        var fold = HeadTrainer.StratifiedFolds(truth, folds, options.Seed);
        var imbalanced = present.Max() > ImbalanceForClassWeights * present.Min();
        var startMiniBatch =
            start.Optimizer == OptimizerKind.Lbfgs ? start with { Optimizer = OptimizerKind.Adam } : start;
        // AdamW's decoupled decay (0 to 0.1) was an axis too: it never moved a cross-validated score in the fourth
        // digit on the shared photos (a head of tens of epochs barely decays), and the probe's L2 grid is the
        // regulariser that matters.
        var miniBatchAxes = new List<Func<HeadRecipe, IEnumerable<HeadRecipe>>>
        {
            r => LearningRates.Select(l => r with { LearningRate = l }),
            r => EpochCounts.Select(e => r with { Epochs = e }),
        };
        var sharedAxes = new List<Func<HeadRecipe, IEnumerable<HeadRecipe>>>
        {
            r => LabelSmoothings.Select(s => r with { LabelSmoothing = s }),
            r => (imbalanced ? ClassWeightings : [r.ClassWeighted]).Select(w => r with { ClassWeighted = w }),
        };
        // Each axis holds the current value too, which is not scored twice.
        var planned =
            1
            + ProbePenalties.Length
            + LearningRates.Length
            - 1
            + EpochCounts.Length
            - 1
            + LabelSmoothings.Length
            - 1
            + (imbalanced ? 1 : 0)
            + 1;
        var candidates = new List<TuningCandidate>();
        var tried = new Dictionary<HeadRecipe, int>();
        var (exhausted, interrupted) = (false, false);

        bool Evaluate(HeadRecipe recipe)
        {
            if (tried.ContainsKey(recipe))
                return true;
            if (exhausted || interrupted)
                return false;
            // Stop before a candidate that, at the pace so far, would overrun the budget.
            if (
                candidates.Count > 0
                && !reusable.ContainsKey(recipe)
                && Elapsed() + ExpectedSeconds(recipe, candidates) > tuning.BudgetSeconds
            )
            {
                exhausted = true;
                return false;
            }
            if (reusable.TryGetValue(recipe, out var done))
            {
                reusedSeconds += done.Seconds;
                Add(done, reported: false);
                return true;
            }
            var candidateClock = Stopwatch.StartNew();
            double[] scores;
            try
            {
                cancellation.ThrowIfCancellationRequested();
                scores = CrossValidate(
                    features,
                    labels,
                    truth,
                    fold,
                    folds,
                    classes,
                    recipe.ApplyTo(options),
                    tuning.Metric,
                    cancellation
                );
            }
            catch (OperationCanceledException) when (candidates.Count > 0)
            {
                interrupted = true;
                return false;
            }
            Add(Scored(recipe, scores, candidateClock.Elapsed.TotalSeconds), reported: true);
            return true;
        }

        void Add(TuningCandidate candidate, bool reported)
        {
            tried[candidate.Recipe] = candidates.Count;
            candidates.Add(candidate);
            if (reported && onCandidate is not null)
                onCandidate(
                    Result(MostRegularisedProbeWithinOneError(Best(_ => true))) with
                    {
                        Partial = true,
                    },
                    planned
                );
        }

        TuningResult Result(HeadRecipe chosen) =>
            new(candidates.ToList(), tried[chosen], folds, tuning.Metric, Elapsed(), exhausted, warnings.ToList())
            {
                Interrupted = interrupted,
            };

        HeadRecipe Best(Func<HeadRecipe, bool> among) =>
            candidates
                .Where(c => among(c.Recipe))
                .OrderBy(c => Better(c, tuning.Metric))
                .ThenBy(c => tried[c.Recipe])
                .First()
                .Recipe;

        // The one-standard-error rule (Hastie, Tibshirani and Friedman, ESL 7.10; glmnet's lambda.1se) on the probe's
        // path: when the winner is a linear probe, the strongest L2 penalty whose score is within one standard error
        // (fold std / sqrt(folds)) of the winner's. Scores that close are noise apart, and the simpler model
        // generalises more reliably; on the shared ants-bees photos the rule moved the choice from 0.03 to 0.3, and
        // held-out accuracy from 94.8 % to 95.4 % (docs/training.md).
        HeadRecipe MostRegularisedProbeWithinOneError(HeadRecipe winner)
        {
            if (winner.Optimizer != OptimizerKind.Lbfgs)
                return winner;
            var top = candidates[tried[winner]];
            var margin = top.Std / Math.Sqrt(folds);
            return candidates
                .Where(c => c.Recipe == winner with { WeightDecay = c.Recipe.WeightDecay })
                .Where(c => Better(c, tuning.Metric) <= Better(top, tuning.Metric) + margin)
                .MaxBy(c => c.Recipe.WeightDecay)!
                .Recipe;
        }

        void Sweep(
            HeadRecipe from,
            IEnumerable<Func<HeadRecipe, IEnumerable<HeadRecipe>>> axes,
            Func<HeadRecipe, bool> among
        )
        {
            foreach (var axis in axes)
            {
                foreach (var recipe in axis(from))
                    if (!Evaluate(recipe))
                        return;
                from = Best(among);
            }
        }

        static bool IsMiniBatch(HeadRecipe r) => r.Optimizer != OptimizerKind.Lbfgs;
        if (Evaluate(start))
        {
            foreach (var penalty in ProbePenalties)
                Evaluate(
                    start with
                    {
                        Head = HeadKind.Linear,
                        Optimizer = OptimizerKind.Lbfgs,
                        WeightDecay = penalty,
                        Epochs = ProbeEpochs,
                    }
                );
            if (!tried.ContainsKey(startMiniBatch))
                Evaluate(startMiniBatch);
            if (tried.ContainsKey(startMiniBatch))
                Sweep(startMiniBatch, miniBatchAxes, IsMiniBatch);
            Sweep(Best(_ => true), sharedAxes, _ => true);
            if (candidates.Any(c => IsMiniBatch(c.Recipe)))
                Evaluate(Best(IsMiniBatch) with { Head = HeadKind.Mlp });
        }
        var best = MostRegularisedProbeWithinOneError(Best(_ => true));
        if (exhausted)
            warnings.Add(
                $"The {tuning.BudgetSeconds:0.#} s budget ran out after {candidates.Count} of {planned} candidates; "
                    + "the best of those was chosen."
            );
        if (interrupted)
            warnings.Add($"Cancelled after {candidates.Count} of {planned} candidates; the best of those was kept.");
        return Result(best);
    }

    /// <summary>
    /// The search's choice scored again with one augmented view of each training image added to the folds that train
    /// on it (held-out images are scored as they are, never their views): kept when it scores strictly better, so
    /// views are trained on only where cross-validation says they help. <paramref name="embeddingSeconds"/>, the
    /// views' backbone pass, counts as the candidate's cost.
    /// </summary>
    public static TuningResult WithViews(
        TuningResult search,
        Tensor features,
        Tensor labels,
        int classes,
        TrainingOptions options,
        AugmentedRows views,
        double embeddingSeconds,
        CancellationToken cancellation
    )
    {
        var clock = Stopwatch.StartNew();
        var truth = labels.data<long>().ToArray();
        var fold = HeadTrainer.StratifiedFolds(truth, search.Folds, options.Seed);
        var recipe = search.ChosenRecipe with { AugmentedViews = 1 };
        var scores = CrossValidate(
            features,
            labels,
            truth,
            fold,
            search.Folds,
            classes,
            recipe.ApplyTo(options),
            search.Metric,
            cancellation,
            views
        );
        // Its cost is the views' backbone pass and the scoring.
        var candidate = Scored(recipe, scores, embeddingSeconds + clock.Elapsed.TotalSeconds);
        var better = Better(candidate, search.Metric) < Better(search.Candidates[search.Chosen], search.Metric);
        return search with
        {
            Candidates = [.. search.Candidates, candidate],
            Chosen = better ? search.Candidates.Count : search.Chosen,
            SecondsUsed = search.SecondsUsed + candidate.Seconds,
        };
    }

    /// <summary>Measured: an MLP head's epoch cost 3.5-5.4 times a linear head's on the shared photos (2 classes), 8
    /// times on 1,000 made images of 10 classes; counted high, so a search stops short rather than overruns.</summary>
    private const double MlpCostPerEpoch = 10;

    /// <summary>
    /// What a candidate will likely cost, from those of its kind already scored: a probe like the probes so far; a
    /// mini-batch recipe by its epochs at their seconds per epoch, an MLP's epochs counted <see
    /// cref="MlpCostPerEpoch"/> times.
    /// </summary>
    private static double ExpectedSeconds(HeadRecipe recipe, IReadOnlyList<TuningCandidate> scored)
    {
        static bool IsProbe(HeadRecipe r) => r.Optimizer == OptimizerKind.Lbfgs;
        static double Epochs(HeadRecipe r) => r.Epochs * (r.Head == HeadKind.Mlp ? MlpCostPerEpoch : 1);
        var alike = scored.Where(c => IsProbe(c.Recipe) == IsProbe(recipe)).ToList();
        if (alike.Count == 0)
            return scored.Average(c => c.Seconds);
        return IsProbe(recipe)
            ? alike.Average(c => c.Seconds)
            : Epochs(recipe) * alike.Average(c => c.Seconds / Epochs(c.Recipe));
    }

    /// <summary>A candidate from its per-fold scores: their mean and (population) standard deviation.</summary>
    private static TuningCandidate Scored(HeadRecipe recipe, double[] scores, double seconds)
    {
        var mean = scores.Average();
        return new TuningCandidate(
            recipe,
            mean,
            Math.Sqrt(scores.Sum(s => (s - mean) * (s - mean)) / scores.Length),
            seconds
        );
    }

    /// <summary>Sort key: lower is better for every metric.</summary>
    private static double Better(TuningCandidate c, TuningMetric metric) =>
        metric == TuningMetric.LogLoss ? c.Score : -c.Score;

    /// <summary>The metric on each fold of out-of-fold predictions (heads that never saw the images they
    /// score).</summary>
    private static double[] CrossValidate(
        Tensor features,
        Tensor labels,
        long[] truth,
        int[] fold,
        int folds,
        int classes,
        TrainingOptions options,
        TuningMetric metric,
        CancellationToken cancellation,
        AugmentedRows? views = null
    )
    {
        using var scope = NewDisposeScope();
        using var logits = HeadTrainer.OutOfFoldLogits(features, labels, classes, folds, options, cancellation, views);
        var rows = TensorRows.Of(nn.functional.softmax(logits, 1));
        var names = Enumerable
            .Range(0, classes)
            .Select(c => c.ToString(System.Globalization.CultureInfo.InvariantCulture))
            .ToList();
        return Enumerable
            .Range(0, folds)
            .Select(f =>
            {
                var held = Enumerable.Range(0, truth.Length).Where(i => fold[i] == f).ToList();
                var report = ClassificationReport.Compute(
                    "folds",
                    names,
                    held.Select(i => rows[i]).ToList(),
                    held.Select(i => (int)truth[i]).ToList()
                );
                return metric switch
                {
                    TuningMetric.LogLoss => report.LogLoss,
                    TuningMetric.Accuracy => report.Accuracy,
                    _ => report.MacroF1,
                };
            })
            .ToArray();
    }
}
