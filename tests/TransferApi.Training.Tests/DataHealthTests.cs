using TransferApi.Training.Heads;
using TransferApi.Training.Health;
using static TorchSharp.torch;

namespace TransferApi.Training.Tests;

/// <summary>The training core's data-health algorithms on features the tests make, where the answer is
/// known.</summary>
public class DataHealthTests
{
    [Fact]
    public void Slightly_changed_copies_are_grouped_and_unrelated_images_are_not()
    {
        // A generator of its own: tests running in parallel share libtorch's global one, so manual_seed would not
        // make the data the same every run.
        using var generator = new Generator((ulong)11);
        using var originals = randn(300, 64, generator: generator);
        // Copies 300..319 of images 0, 10, ..., 190, each a little changed.
        using var copies = originals.index_select(0, arange(0, 200, 10)) + 0.05 * randn(20, 64, generator: generator);
        using var features = cat([originals, copies], 0);
        var groups = NearDuplicates.Find(features, threshold: 0.95, blockRows: 64);
        Assert.Equal(
            Enumerable.Range(0, 20).Select(k => $"{10 * k},{300 + k}"),
            groups.Select(g => string.Join(",", g.Images))
        );
        Assert.All(groups, g => Assert.InRange(g.Similarity, 0.95, 1));
    }

    [Fact]
    public void A_chain_of_copies_is_one_group_with_its_weakest_link()
    {
        // a ~ b and b ~ c above the threshold; a and c below it.
        using var features = tensor(new float[] { 1, 0, 0.96f, 0.28f, 0.85f, 0.53f, 0, 1 }, [4, 2]);
        var group = Assert.Single(NearDuplicates.Find(features, threshold: 0.95));
        Assert.Equal([0, 1, 2], group.Images);
        Assert.InRange(group.Similarity, 0.95, 0.97);
    }

    [Fact]
    public void Labels_flipped_on_purpose_lead_the_label_issues()
    {
        using var generator = new Generator((ulong)5);
        const int perClass = 60;
        var centres = new[] { -3f, 0f, 3f };
        using var features = cat(
            centres
                .Select(c =>
                    randn(perClass, 16, generator: generator) + c * (arange(16) % 3 == 0).to_type(ScalarType.Float32)
                )
                .ToList(),
            0
        );
        var truth = Enumerable.Range(0, 3 * perClass).Select(n => n / perClass).ToList();
        var given = truth.ToList();
        int[] flipped = [3, 17, 41, 66, 88, 102, 125, 150, 171];
        foreach (var n in flipped)
            given[n] = (given[n] + 1) % 3;
        using var labels = tensor(given.Select(l => (long)l).ToArray());
        using var logits = HeadTrainer.OutOfFoldLogits(
            features,
            labels,
            3,
            5,
            new TrainingOptions { Epochs = 30, LearningRate = 0.01 },
            CancellationToken.None
        );
        using var softmax = nn.functional.softmax(logits, 1);
        var flat = softmax.data<float>().ToArray();
        var probabilities = Enumerable.Range(0, given.Count).Select(n => flat[(3 * n)..(3 * n + 3)]).ToList();

        var issues = LabelIssues.Find(probabilities, given);
        var top = issues.Take(flipped.Length + 3).Select(i => i.Image).ToHashSet();
        Assert.True(flipped.Count(top.Contains) >= flipped.Length - 1, $"top issues {string.Join(",", top)}");
        Assert.All(issues.Where(i => flipped.Contains(i.Image)), i => Assert.Equal(truth[i.Image], i.SuggestedLabel));
        Assert.Equal(issues.Select(i => i.SelfConfidence).Order(), issues.Select(i => i.SelfConfidence));
    }

    [Fact]
    public void A_data_set_report_finds_its_leaks_flipped_labels_outliers_and_small_classes()
    {
        using var generator = new Generator((ulong)8);
        const int perClass = 40;
        string[] names = ["a", "b", "c"];
        var rows = new List<Tensor>();
        var images = new List<HealthImage>();
        for (var c = 0; c < 3; c++)
        {
            var centre = zeros(32);
            centre[c * 8] = 6;
            rows.Add(randn(perClass, 32, generator: generator) + centre);
            images.AddRange(
                Enumerable
                    .Range(0, perClass)
                    .Select(k => new HealthImage(names[c], k < 30 ? DataSplit.Train : DataSplit.Validation))
            );
        }
        // A small class "d" of 5, 3 unlabeled images, 4 copies of training images placed in test, 2 far outliers.
        var small = zeros(32);
        small[30] = 6;
        rows.Add(randn(5, 32, generator: generator) + small);
        images.AddRange(Enumerable.Repeat(new HealthImage("d", DataSplit.Train), 5));
        rows.Add(randn(3, 32, generator: generator) + small);
        images.AddRange(Enumerable.Repeat(new HealthImage(null, DataSplit.Unassigned), 3));
        var copied = new long[] { 1, 45, 85, 90 };
        using var all = cat(rows, 0);
        rows.Add(all.index_select(0, tensor(copied)) + 0.02 * randn(4, 32, generator: generator));
        images.AddRange(copied.Select(i => images[(int)i] with { Split = DataSplit.Test }));
        rows.Add(40 * randn(2, 32, generator: generator));
        images.AddRange(Enumerable.Repeat(new HealthImage("a", DataSplit.Train), 2));
        int[] flipped = [5, 50, 95, 12, 60];
        foreach (var n in flipped)
            images[n] = images[n] with { Label = names[(Array.IndexOf(names, images[n].Label) + 1) % 3] };
        using var features = cat(rows, 0);

        var health = DatasetHealth.Analyze(features, images);

        var start = 3 * perClass + 8;
        Assert.Equal(
            copied.Select((i, k) => $"{i},{start + k}").Order(),
            health.Leakage.Select(g => string.Join(",", g.Images)).Order()
        );
        Assert.Equal(health.NearDuplicates.Count, health.Leakage.Count);
        var top = health.LabelIssues.Take(flipped.Length + 2).Select(i => i.Image).ToHashSet();
        Assert.True(flipped.Count(top.Contains) >= flipped.Length - 1, $"top issues {string.Join(",", top)}");
        Assert.DoesNotContain(health.LabelIssues, i => images[i.Image].Label is null);
        Assert.Equal([start + 4, start + 5], health.Outliers.Select(o => o.Image).Order().Take(2));
        Assert.Equal(["a", "b", "c", "d"], health.Labels);
        Assert.Equal(5, health.ClassBalance.Single(c => c.Label == "d").Images);
        Assert.Contains(health.Warnings, w => w.Contains("'d' has 5 image(s)"));
        Assert.Contains(health.Warnings, w => w.Contains("imbalanced"));
    }

    [Fact]
    public void Suggestions_prefer_uncertain_and_diverse_images_over_confident_ones()
    {
        using var generator = new Generator((ulong)3);
        using var directions = nn.functional.normalize(randn(6, 32, generator: generator), p: 2, dim: 1);
        // 0: a coin toss; 1: a near-duplicate of it; 2: nearly as uncertain and close to 0 (similarity about 0.8);
        // 3: less uncertain but unlike the rest; 4, 5: confident.
        using var close = nn.functional.normalize(directions[0] + 0.75 * directions[1], p: 2, dim: 0);
        using var features = stack([
            directions[0],
            directions[0] + 0.01 * directions[5],
            close,
            directions[2],
            directions[3],
            directions[4],
        ]);
        float[][] probabilities =
        [
            [0.5f, 0.5f],
            [0.51f, 0.49f],
            [0.55f, 0.45f],
            [0.7f, 0.3f],
            [0.99f, 0.01f],
            [0.02f, 0.98f],
        ];

        var ranked = LabelSuggestions.Rank(probabilities, features, count: 6);

        // The coin toss first; its copy never; the unlike image before the one close to the first; the confident ones
        // last, the less confident of them first.
        Assert.Equal([0, 3, 2, 5, 4], ranked.Select(s => s.Image));
        Assert.Equal(1.0, ranked[0].Uncertainty, 1e-6);
        Assert.Equal(ranked.Select(s => s.Score).OrderDescending(), ranked.Select(s => s.Score));
        Assert.Equal([0, 0, 0, 1, 0], ranked.Select(s => s.Predicted));
    }
}
