using TransferApi.Training.Evaluation;

namespace TransferApi.Training.Tests;

public class TemperatureScalingTests
{
    /// <summary>
    /// Images whose true class is drawn from softmax(<paramref name="logits"/>): logits that are calibrated by
    /// construction. Multiplying them by a factor afterwards makes a model over- (factor > 1) or under-confident.
    /// </summary>
    private static (List<float[]> Logits, List<int> Labels) Draw(int images, int classes, double factor, int seed)
    {
        var random = new Random(seed);
        var (logits, labels) = (new List<float[]>(), new List<int>());
        for (var n = 0; n < images; n++)
        {
            var row = Enumerable.Range(0, classes).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
            var probabilities = TemperatureScaling.Softmax(row, 1);
            var (pick, cumulative, label) = (random.NextDouble(), 0.0, classes - 1);
            for (var c = 0; c < classes; c++)
                if ((cumulative += probabilities[c]) >= pick)
                {
                    label = c;
                    break;
                }
            logits.Add(row.Select(v => (float)(v * factor)).ToArray());
            labels.Add(label);
        }
        return (logits, labels);
    }

    [Fact]
    public void An_overconfident_head_is_cooled_and_its_calibration_error_falls()
    {
        var (logits, labels) = Draw(4000, 5, factor: 4, seed: 1);
        var calibration = TemperatureScaling.Fit(logits, labels, "validation");
        Assert.InRange(calibration.Temperature, 3.5, 4.5);
        Assert.True(
            calibration.ExpectedCalibrationErrorBefore > 0.15,
            $"before {calibration.ExpectedCalibrationErrorBefore:F3}"
        );
        Assert.True(
            calibration.ExpectedCalibrationErrorAfter < 0.03,
            $"after {calibration.ExpectedCalibrationErrorAfter:F3}"
        );
        Assert.Equal(4000, calibration.Images);
    }

    [Fact]
    public void An_underconfident_head_is_sharpened_and_a_calibrated_one_is_left_near_one()
    {
        var (shy, shyLabels) = Draw(4000, 3, factor: 0.5, seed: 2);
        Assert.InRange(TemperatureScaling.Fit(shy, shyLabels, "validation").Temperature, 0.42, 0.58);
        var (calibrated, labels) = Draw(4000, 3, factor: 1, seed: 3);
        Assert.InRange(TemperatureScaling.Fit(calibrated, labels, "validation").Temperature, 0.88, 1.12);
    }

    [Fact]
    public void Scaling_never_changes_the_predicted_class()
    {
        var (logits, _) = Draw(200, 4, factor: 3, seed: 4);
        foreach (var row in logits)
        {
            var raw = TemperatureScaling.Softmax(row, 1);
            var cooled = TemperatureScaling.Softmax(row, 2.7);
            Assert.Equal(Array.IndexOf(raw, raw.Max()), Array.IndexOf(cooled, cooled.Max()));
            Assert.True(cooled.Max() <= raw.Max() + 1e-6);
        }
    }

    [Fact]
    public void No_images_leave_the_temperature_at_one()
    {
        Assert.Equal(1, TemperatureScaling.Fit([], [], "validation").Temperature);
    }

    [Fact]
    public void A_split_the_model_gets_entirely_right_does_not_make_it_certain()
    {
        // 60 images, every one ranked right with a margin of 2 to 6: the plain likelihood wants T -> 0.
        var random = new Random(4);
        var logits = Enumerable
            .Range(0, 60)
            .Select(n =>
                n % 2 == 0
                    ? new[] { (float)(2 + 4 * random.NextDouble()), 0f }
                    : [0f, (float)(2 + 4 * random.NextDouble())]
            )
            .ToList();
        var labels = Enumerable.Range(0, 60).Select(n => n % 2).ToList();
        var calibration = TemperatureScaling.Fit(logits, labels, "validation");
        Assert.InRange(calibration.Temperature, 0.05, 1.5);
        // About as sure as 60 right answers allow (1 - 1/62 = 0.984 on average).
        var confidence = logits.Average(l => TemperatureScaling.Softmax(l, calibration.Temperature).Max());
        Assert.InRange(confidence, 0.95, 0.995);
    }
}
