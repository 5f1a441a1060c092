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
        manual_seed(11);
        using var originals = randn(300, 64);
        // Copies 300..319 of images 0, 10, ..., 190, each a little changed.
        using var copies = originals.index_select(0, arange(0, 200, 10)) + 0.05 * randn(20, 64);
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
        manual_seed(5);
        const int perClass = 60;
        var centres = new[] { -3f, 0f, 3f };
        using var features = cat(
            centres.Select(c => randn(perClass, 16) + c * (arange(16) % 3 == 0).to_type(ScalarType.Float32)).ToList(),
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
}
