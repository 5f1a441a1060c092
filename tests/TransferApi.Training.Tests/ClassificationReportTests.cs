using TransferApi.Training.Evaluation;

namespace TransferApi.Training.Tests;

public class ClassificationReportTests
{
    private static float[] OneHotish(int predicted, int classes, float confidence = 0.8f)
    {
        var p = Enumerable.Repeat((1 - confidence) / (classes - 1), classes).ToArray();
        p[predicted] = confidence;
        return p;
    }

    [Fact]
    public void Report_matches_a_hand_computed_example()
    {
        string[] labels = ["a", "b", "c"];
        int[] truth = [0, 0, 1, 1, 2, 2];
        int[] predicted = [0, 1, 1, 1, 2, 0];
        var report = ClassificationReport.Compute(
            "test",
            labels,
            predicted.Select(p => OneHotish(p, 3)).ToList(),
            truth
        );

        Assert.Equal(
            [
                [1, 1, 0],
                [0, 2, 0],
                [1, 0, 1],
            ],
            report.ConfusionMatrix.Counts.Select(r => r.ToArray())
        );
        Assert.Equal(4 / 6.0, report.Accuracy, 9);
        Assert.Equal(1.0, report.Top5Accuracy);
        Assert.Equal([0.5, 2 / 3.0, 1.0], report.PerClass.Select(c => c.Precision), new Tolerance());
        Assert.Equal([0.5, 1.0, 0.5], report.PerClass.Select(c => c.Recall), new Tolerance());
        Assert.Equal([0.5, 0.8, 2 / 3.0], report.PerClass.Select(c => c.F1), new Tolerance());
        Assert.Equal((0.5 + 0.8 + 2 / 3.0) / 3, report.MacroF1, 6);
        Assert.Equal([2, 2, 2], report.PerClass.Select(c => c.Support));
        // 4 right at 0.8, 2 wrong with 0.1 on the truth.
        Assert.Equal((4 * -Math.Log(0.8) + 2 * -Math.Log(0.1)) / 6, report.LogLoss, 5);
    }

    [Fact]
    public void Top5_counts_the_truth_among_the_five_most_probable()
    {
        string[] labels = ["a", "b", "c", "d", "e", "f", "g"];
        float[] probabilities = [0.30f, 0.20f, 0.15f, 0.12f, 0.10f, 0.08f, 0.05f];
        var report = ClassificationReport.Compute("validation", labels, [probabilities, probabilities], [4, 5]);
        Assert.Equal(0.5, report.Top5Accuracy);
        Assert.Equal(0, report.Accuracy);
    }

    private sealed class Tolerance : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) < 1e-9;

        public int GetHashCode(double obj) => 0;
    }
}

public class McNemarTests
{
    [Theory]
    // b = 1, c = 6: P(X <= 1) = (1 + 7) / 2^7 = 0.0625, two-sided 0.125.
    [InlineData(1, 6, 0.125)]
    // b = 0, c = 5: 2 / 2^5.
    [InlineData(0, 5, 0.0625)]
    // b = 10, c = 2: P(X <= 2) = (1 + 12 + 66) / 4096, two-sided 0.03857.
    [InlineData(10, 2, 158.0 / 4096)]
    [InlineData(4, 4, 1.0)]
    [InlineData(0, 0, 1.0)]
    public void The_exact_p_value_matches_hand_computed_binomial_tails(int b, int c, double expected) =>
        Assert.Equal(expected, McNemar.ExactPValue(b, c), 1e-12);

    [Fact]
    public void Only_images_exactly_one_model_gets_right_count()
    {
        bool[] first = [true, true, true, false, false, true];
        bool[] second = [true, false, false, false, true, true];
        var result = McNemar.Test(first, second);
        Assert.Equal((2, 1), (result.OnlyFirstRight, result.OnlySecondRight));
        Assert.Equal(1.0, result.PValue, 1e-12);
    }

    [Fact]
    public void Thousands_of_disagreements_do_not_underflow()
    {
        Assert.InRange(McNemar.ExactPValue(1500, 1600), 0.05, 1);
        Assert.InRange(McNemar.ExactPValue(1000, 2000), 0, 1e-20);
    }
}
