using TransferApi.TestSupport;
using TransferApi.Training.Tuning;
using static TorchSharp.torch;

namespace TransferApi.Training.Tests;

/// <summary>The recipe search on features the tests make.</summary>
[Collection(BackboneCollection.Name)]
public class HeadSearchTests(BackboneFixture fixture)
{
    /// <summary>Three overlapping classes of 40 images: enough for a recipe to matter.</summary>
    private static (Tensor Features, Tensor Labels) Classes(
        long seed,
        int perClass = 40,
        int classes = 3,
        int dimensions = 32
    )
    {
        using var generator = new Generator((ulong)seed);
        var centres = randn(classes, dimensions, generator: generator);
        var labels = arange(perClass * classes).remainder(classes);
        return (
            (
                centres.index_select(0, labels) + 1.5 * randn(perClass * classes, dimensions, generator: generator)
            ).relu(),
            labels
        );
    }

    [Fact]
    public void The_same_features_and_seed_choose_the_same_recipe_with_the_same_scores()
    {
        var (features, labels) = Classes(1);
        var first = HeadSearch.Run(features, labels, 3, new TrainingOptions(), new TuningOptions(), default);
        var second = HeadSearch.Run(features, labels, 3, new TrainingOptions(), new TuningOptions(), default);
        Assert.Equal(first.ChosenRecipe, second.ChosenRecipe);
        Assert.Equal(first.Candidates.Select(c => c.Score), second.Candidates.Select(c => c.Score));
        Assert.Equal(HeadRecipe.Of(new TrainingOptions()), first.Candidates[0].Recipe);
        Assert.True(first.Candidates.Count > 10);
        Assert.False(first.BudgetExhausted);
        AssertChosenByOneStandardError(first);
    }

    /// <summary>The chosen candidate is the best cross-validated one, or, when that is a linear probe, the strongest
    /// penalty of the same probe within one standard error of it.</summary>
    private static void AssertChosenByOneStandardError(TuningResult result)
    {
        var best = result.Candidates.MinBy(c => c.Score)!;
        var chosen = result.Candidates[result.Chosen];
        var margin = best.Std / Math.Sqrt(result.Folds);
        if (best.Recipe.Optimizer != OptimizerKind.Lbfgs)
        {
            Assert.Same(best, chosen);
            return;
        }
        var path = result
            .Candidates.Where(c => c.Recipe == best.Recipe with { WeightDecay = c.Recipe.WeightDecay })
            .ToList();
        Assert.Contains(chosen, path);
        Assert.True(chosen.Score <= best.Score + margin, $"{chosen.Score} vs {best.Score} + {margin}");
        Assert.DoesNotContain(path, c =>
            c.Recipe.WeightDecay > chosen.Recipe.WeightDecay && c.Score <= best.Score + margin
        );
    }

    [Fact]
    public void The_probe_path_and_the_mini_batch_recipes_are_both_searched()
    {
        var (features, labels) = Classes(7);
        var result = HeadSearch.Run(features, labels, 3, new TrainingOptions(), new TuningOptions(), default);
        var probes = result.Candidates.Where(c => c.Recipe.Optimizer == OptimizerKind.Lbfgs).ToList();
        Assert.True(probes.Select(c => c.Recipe.WeightDecay).Distinct().Count() >= 9);
        Assert.Contains(result.Candidates, c => c.Recipe.LearningRate != 0.001);
        Assert.Contains(result.Candidates, c => c.Recipe.Head == HeadKind.Mlp);
    }

    [Fact]
    public void Cancelling_the_search_keeps_the_best_candidate_so_far_and_says_so()
    {
        var (features, labels) = Classes(8);
        using var cancel = new CancellationTokenSource();
        var reported = 0;
        var result = HeadSearch.Run(
            features,
            labels,
            3,
            new TrainingOptions(),
            new TuningOptions(),
            cancel.Token,
            (soFar, _) =>
            {
                Assert.True(soFar.Partial);
                if (++reported == 4)
                    cancel.Cancel();
            }
        );
        Assert.True(result.Interrupted);
        Assert.Equal(4, result.Candidates.Count);
        AssertChosenByOneStandardError(result);
        Assert.Contains(result.Warnings, w => w.StartsWith("Cancelled after 4 of", StringComparison.Ordinal));
        // Before any candidate has finished there is nothing to keep: the cancellation stands.
        Assert.ThrowsAny<OperationCanceledException>(() =>
            HeadSearch.Run(features, labels, 3, new TrainingOptions(), new TuningOptions(), cancel.Token)
        );
    }

    [Fact]
    public void A_resumed_search_scores_only_the_candidates_it_had_not_and_chooses_the_same()
    {
        var (features, labels) = Classes(9);
        var full = HeadSearch.Run(features, labels, 3, new TrainingOptions(), new TuningOptions(), default);
        var scored = 0;
        var resumed = HeadSearch.Run(
            features,
            labels,
            3,
            new TrainingOptions(),
            new TuningOptions(),
            default,
            (_, _) => scored++,
            full.Candidates.Take(5).ToList()
        );
        Assert.Equal(full.Candidates.Count - 5, scored);
        Assert.Equal(full.ChosenRecipe, resumed.ChosenRecipe);
        Assert.Equal(full.Candidates.Select(c => c.Score), resumed.Candidates.Select(c => c.Score));
    }

    [Fact]
    public void A_spent_budget_stops_the_search_with_the_best_so_far_and_says_so()
    {
        var (features, labels) = Classes(2);
        var result = HeadSearch.Run(
            features,
            labels,
            3,
            new TrainingOptions(),
            new TuningOptions(BudgetSeconds: 0.001),
            default
        );
        Assert.True(result.BudgetExhausted);
        Assert.Single(result.Candidates);
        Assert.Contains(result.Warnings, w => w.Contains("budget ran out after 1 of", StringComparison.Ordinal));
    }

    [Fact]
    public void A_class_too_small_for_the_folds_gets_fewer_folds_and_a_warning()
    {
        var (features, labels) = Classes(3, perClass: 3);
        var result = HeadSearch.Run(features, labels, 3, new TrainingOptions(), new TuningOptions(Folds: 5), default);
        Assert.Equal(3, result.Folds);
        Assert.Contains(result.Warnings, w => w.Contains("3 folds instead of 5", StringComparison.Ordinal));
        Assert.All(result.Candidates, c => Assert.False(double.IsNaN(c.Score)));
    }

    [Fact]
    public void A_job_tries_augmented_views_when_the_budget_covers_them_and_says_why_not_when_it_does_not()
    {
        var images = LabeledPhotos
            .AntsAndBees(12, DataSplit.Train)
            .Concat(LabeledPhotos.AntsAndBees(4, DataSplit.Validation, folder: "val"))
            .ToList();
        var trainer = new TransferLearningTrainer(fixture.Backbone);
        var tried = trainer.Train(
            images,
            new TrainingOptions { Tuning = new TuningOptions() },
            new RecordingObserver(),
            default
        );
        var search = tried.Tuning!;
        var withViews = Assert.Single(search.Candidates, c => c.Recipe.AugmentedViews == 1);
        // It is the search's choice plus views, kept only when it scores strictly better.
        var without = Assert.Single(search.Candidates, c => c.Recipe == withViews.Recipe with { AugmentedViews = 0 });
        Assert.Equal(withViews.Score < without.Score ? withViews.Recipe : without.Recipe, search.ChosenRecipe);
        Assert.Same(withViews, search.Candidates[^1]);

        var hurried = trainer.Train(
            images,
            new TrainingOptions { Tuning = new TuningOptions(BudgetSeconds: 0.001) },
            new RecordingObserver(),
            default
        );
        Assert.DoesNotContain(hurried.Tuning!.Candidates, c => c.Recipe.AugmentedViews > 0);
        Assert.Contains(hurried.Tuning.Warnings, w =>
            w.StartsWith("Augmented views were not tried", StringComparison.Ordinal)
        );
    }

    [Fact]
    public void A_job_chooses_its_recipe_without_reading_validation_or_test_images()
    {
        var size = fixture.Backbone.FeatureSize;
        var (train, trainLabels) = Classes(4, perClass: 30, dimensions: size);
        var (held, heldLabels) = Classes(5, perClass: 10, dimensions: size);
        var truth = trainLabels.data<long>().ToArray();
        var heldTruth = heldLabels.data<long>().ToArray();
        List<LabeledImage> Images(bool poisoned)
        {
            using var generator = new Generator((ulong)6);
            // Poisoned: held-out features replaced by noise and every held-out label shifted to another class.
            using var heldFeatures = poisoned ? 100 * randn(held.shape, generator: generator) : held.clone();
            var heldRows = heldFeatures.data<float>().ToArray();
            var trainRows = train.data<float>().ToArray();
            return Enumerable
                .Range(0, truth.Length)
                .Select(i => new LabeledImage(
                    $"c{truth[i]}",
                    DataSplit.Train,
                    [],
                    null,
                    trainRows.AsSpan(i * size, size).ToArray()
                ))
                .Concat(
                    Enumerable
                        .Range(0, heldTruth.Length)
                        .Select(i => new LabeledImage(
                            $"c{(heldTruth[i] + (poisoned ? 1 : 0)) % 3}",
                            i % 2 == 0 ? DataSplit.Validation : DataSplit.Test,
                            [],
                            null,
                            heldRows.AsSpan(i * size, size).ToArray()
                        ))
                )
                .ToList();
        }
        var options = new TrainingOptions { Tuning = new TuningOptions() };
        var trainer = new TransferLearningTrainer(fixture.Backbone);
        var observer = new RecordingObserver();
        var clean = trainer.Train(Images(poisoned: false), options, observer, default).Tuning!;
        var poisoned = trainer.Train(Images(poisoned: true), options, new RecordingObserver(), default).Tuning!;
        Assert.Equal(clean.ChosenRecipe, poisoned.ChosenRecipe);
        // Images given by their features alone have no pixels to augment.
        Assert.DoesNotContain(clean.Candidates, c => c.Recipe.AugmentedViews > 0);
        Assert.Equal(clean.Candidates.Select(c => c.Score), poisoned.Candidates.Select(c => c.Score));
        Assert.Null(
            trainer.Train(Images(poisoned: false), new TrainingOptions(), new RecordingObserver(), default).Tuning
        );
        // The search is said after each candidate and once done, so a resumed job can pick it up.
        Assert.Equal(clean.Candidates.Count + 1, observer.Tuned.Count);
        Assert.All(observer.Tuned.SkipLast(1), t => Assert.True(t.Partial));
        Assert.False(observer.Tuned[^1].Partial);
        // Resumed with the finished search, the job searches nothing and trains the same recipe.
        var resumedObserver = new RecordingObserver();
        var resumed = trainer.Train(Images(false), options, resumedObserver, default, searched: clean);
        Assert.Equal(clean.ChosenRecipe, resumed.Tuning!.ChosenRecipe);
        Assert.DoesNotContain(resumedObserver.Progress, p => p.Stage == TrainingStage.Tuning);
        // A search of other images is not reused.
        var other = trainer.Train(Images(true), options, new RecordingObserver(), default, searched: clean);
        Assert.NotEqual(clean.Fingerprint, other.Tuning!.Fingerprint);
        // Cancelled during the search, the job still ends with a model: the best candidate so far.
        using var cancel = new CancellationTokenSource();
        var stopped = new RecordingObserver(p =>
        {
            if (p.Stage == TrainingStage.Tuning && p.Batch == 3)
                cancel.Cancel();
        });
        var cancelled = trainer.Train(Images(poisoned: false), options, stopped, cancel.Token);
        Assert.True(cancelled.Interrupted);
        Assert.True(cancelled.Tuning!.Interrupted);
        Assert.Equal(3, cancelled.Tuning.Candidates.Count);
        Assert.Equal(cancelled.Tuning.ChosenRecipe.ApplyTo(options).Head, cancelled.Checkpoint.Head);
        Assert.NotEmpty(cancelled.Metrics);
        // Stopped (a shutdown stops a job the same way), the search is left to continue: resumed, it scores only the
        // candidates it had not, and chooses what the uninterrupted search chose.
        Assert.True(stopped.Tuned[^1].Partial);
        var continued = new RecordingObserver();
        var finished = trainer.Train(Images(poisoned: false), options, continued, default, searched: stopped.Tuned[^1]);
        Assert.Equal(clean.ChosenRecipe, finished.Tuning!.ChosenRecipe);
        Assert.Equal(clean.Candidates.Count - 3, continued.Progress.Count(p => p.Stage == TrainingStage.Tuning));
        // Progress says Tuning with candidates done of those planned, then trains the head.
        var tuning = observer.Progress.Where(p => p.Stage == TrainingStage.Tuning).ToList();
        Assert.Equal(Enumerable.Range(1, clean.Candidates.Count), tuning.Select(p => p.Batch));
        Assert.Contains(observer.Progress.SkipWhile(p => p.Stage != TrainingStage.Tuning), p =>
            p.Stage == TrainingStage.TrainingHead
        );
    }
}
