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
public sealed record TuningOptions(double BudgetSeconds = 30, int Folds = 5, TuningMetric Metric = TuningMetric.LogLoss)
{
    public const double MaxBudgetSeconds = 3600;

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
public sealed record HeadRecipe(
    HeadKind Head,
    OptimizerKind Optimizer,
    double LearningRate,
    double WeightDecay,
    int Epochs,
    double LabelSmoothing,
    bool ClassWeighted
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
    public HeadRecipe ChosenRecipe => Candidates[Chosen].Recipe;
}

/// <summary>
/// Chooses a head's recipe by stratified k-fold cross-validation on the training features only (validation and
/// test images are never read: they stay for the honest final score). A coordinate search from the job's recipe:
/// each axis in turn (weight decay, learning rate, epochs, label smoothing, class weights when classes are
/// imbalanced, the head's kind) is swept with the others held at the best so far. Seeded folds and heads: the same
/// features and options choose the same recipe.
/// </summary>
public static class HeadSearch
{
    /// <summary>Imbalance (largest over smallest class) above which class weighting is tried.</summary>
    public const double ImbalanceForClassWeights = 1.5;

    // Each axis's values, swept in this order (AdamW's decoupled weight decay).
    private static readonly double[] WeightDecays = [0, 1e-4, 1e-3, 1e-2, 1e-1];
    private static readonly double[] LearningRates = [3e-4, 1e-3, 3e-3, 1e-2];
    private static readonly int[] EpochCounts = [10, 30, 60];
    private static readonly double[] LabelSmoothings = [0, 0.1];
    private static readonly bool[] ClassWeightings = [false, true];
    private static readonly HeadKind[] HeadKinds = [HeadKind.Linear, HeadKind.Mlp];

    public static TuningResult Run(
        Tensor features,
        Tensor labels,
        int classes,
        TrainingOptions options,
        TuningOptions tuning,
        CancellationToken cancellation,
        Action<int, int>? onCandidate = null
    )
    {
        var clock = Stopwatch.StartNew();
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
        var axes = new List<Func<HeadRecipe, IEnumerable<HeadRecipe>>>
        {
            // Without weight decay AdamW is Adam: the recipe keeps its optimizer, and is not tried twice.
            r =>
                WeightDecays.Select(w =>
                    r with
                    {
                        Optimizer = w == 0 ? r.Optimizer : OptimizerKind.AdamW,
                        WeightDecay = w,
                    }
                ),
            r => LearningRates.Select(l => r with { LearningRate = l }),
            r => EpochCounts.Select(e => r with { Epochs = e }),
            r => LabelSmoothings.Select(s => r with { LabelSmoothing = s }),
            r => (imbalanced ? ClassWeightings : [r.ClassWeighted]).Select(w => r with { ClassWeighted = w }),
            r => HeadKinds.Select(h => r with { Head = h }),
        };
        var planned =
            1
            + WeightDecays.Length
            + LearningRates.Length
            + EpochCounts.Length
            + LabelSmoothings.Length
            + (imbalanced ? 2 : 1)
            + HeadKinds.Length;
        var candidates = new List<TuningCandidate>();
        var tried = new Dictionary<HeadRecipe, int>();
        var best = start;
        var exhausted = false;

        bool Evaluate(HeadRecipe recipe)
        {
            if (tried.ContainsKey(recipe))
                return true;
            // Stop before a candidate that, at the pace so far, would overrun the budget.
            var pace = candidates.Count == 0 ? 0 : candidates.Average(c => c.Seconds);
            if (clock.Elapsed.TotalSeconds + pace > tuning.BudgetSeconds && candidates.Count > 0)
            {
                exhausted = true;
                return false;
            }
            cancellation.ThrowIfCancellationRequested();
            var candidateClock = Stopwatch.StartNew();
            var scores = CrossValidate(
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
            var mean = scores.Average();
            var std = Math.Sqrt(scores.Sum(s => (s - mean) * (s - mean)) / scores.Length);
            tried[recipe] = candidates.Count;
            candidates.Add(new TuningCandidate(recipe, mean, std, candidateClock.Elapsed.TotalSeconds));
            onCandidate?.Invoke(candidates.Count, planned);
            return true;
        }

        if (Evaluate(start))
            foreach (var axis in axes)
            {
                foreach (var recipe in axis(best))
                    if (!Evaluate(recipe))
                        break;
                best = candidates.OrderBy(c => Better(c, tuning.Metric)).ThenBy(c => tried[c.Recipe]).First().Recipe;
                if (exhausted)
                    break;
            }
        if (exhausted)
            warnings.Add(
                $"The {tuning.BudgetSeconds:0.#} s budget ran out after {candidates.Count} of {planned} candidates; "
                    + "the best of those was chosen."
            );
        return new TuningResult(
            candidates,
            tried[best],
            folds,
            tuning.Metric,
            clock.Elapsed.TotalSeconds,
            exhausted,
            warnings
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
        CancellationToken cancellation
    )
    {
        using var scope = NewDisposeScope();
        using var logits = HeadTrainer.OutOfFoldLogits(features, labels, classes, folds, options, cancellation);
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
