using TransferApi.Training.Evaluation;
using static TorchSharp.torch;

namespace TransferApi.Training.Tests;

/// <summary>The training core's side of issue 14: calibration's fallback, thresholds from data, novelty's
/// threshold.</summary>
[Collection(BackboneCollection.Name)]
public class ModelTrustTests(BackboneFixture fixture)
{
    [Fact]
    public void Too_few_validation_images_calibrate_on_out_of_fold_training_images()
    {
        var images = LabeledPhotos.AntsAndBees(20);
        var result = new TransferLearningTrainer(fixture.Backbone).Train(
            images,
            new TrainingOptions { Epochs = 5, ValidationFraction = 0.2 },
            new RecordingObserver(),
            CancellationToken.None
        );
        Assert.Equal(8, result.ValidationImages);
        Assert.Equal(("cross-validation", 32), (result.Calibration!.Method, result.Calibration.Images));
        Assert.Equal(result.Calibration.Temperature, result.Checkpoint.Temperature);
        // The novelty threshold comes from the training images scored against the others.
        Assert.Equal("training (leave-one-out)", result.Checkpoint.Novelty!.Reference);
        Assert.Equal(32, result.Checkpoint.Novelty.ReferenceScores.Length);
        // The report's images: one per validation image, worst first, with the report's probabilities.
        var evaluated = result.EvaluatedImages!;
        Assert.Equal(result.Report!.Images, evaluated.Count);
        Assert.Equal(evaluated.Select(e => e.Loss).OrderDescending(), evaluated.Select(e => e.Loss));
        var counts = result.Report.ConfusionMatrix.Counts;
        Assert.Equal(counts[0][1] + counts[1][0], evaluated.Count(e => e.Label != e.Predicted));
    }

    [Fact]
    public void The_recommended_threshold_has_the_best_F1_or_reaches_the_target_precision()
    {
        // Class 0's probabilities; truth 0 is positive. Above 0.7 every image is positive; 0.55 is a negative.
        float[] scores = [0.95f, 0.9f, 0.8f, 0.7f, 0.6f, 0.55f, 0.3f, 0.2f];
        int[] truth = [0, 0, 0, 0, 0, 1, 0, 1];
        var probabilities = scores.Select(s => new[] { s, 1 - s }).ToList();
        var best = ClassThresholds.Compute(["a", "b"], probabilities, truth, targetPrecision: null)[0];
        // Best F1: answer everything from 0.3 (6 of 6 positives, 1 negative) = 0.923; from 0.6, 5/6 recall = 0.909.
        Assert.Equal((6 / 7.0, 1.0), (best.Precision, best.Recall));
        Assert.Equal((0.3 + 0.2) / 2, best.Recommended, 1e-6);
        var precise = ClassThresholds.Compute(["a", "b"], probabilities, truth, targetPrecision: 1)[0];
        // Precision 1 holds down to 0.6: the midpoint to the next score, 0.55, is recommended.
        Assert.Equal((1.0, 5 / 6.0), (precise.Precision, precise.Recall));
        Assert.Equal((0.6 + 0.55) / 2, precise.Recommended, 1e-6);
        Assert.Equal(101, best.Curve.Count);
        Assert.Equal((0.0, 6 / 8.0, 1.0), (best.Curve[0].Threshold, best.Curve[0].Precision, best.Curve[0].Recall));
    }

    [Fact]
    public void Novelty_grows_with_distance_from_the_training_features_and_its_threshold_accepts_the_share_asked()
    {
        manual_seed(3);
        using var training = randn(200, 16) + 5;
        using var heldOut = randn(100, 16) + 5;
        using var far = randn(50, 16) * 3 - 5;
        var novelty = NoveltyModel.Fit(training, heldOut, seed: 1);
        using var bank = novelty.BankTensor();
        var near = novelty.Score(bank, heldOut);
        var strange = novelty.Score(bank, far);
        Assert.True(strange.Min() > near.Max(), $"{strange.Min()} vs {near.Max()}");
        Assert.Equal(95, near.Count(s => s <= novelty.Threshold(0.95)));
        Assert.Equal(80, near.Count(s => s <= novelty.Threshold(0.80)));
    }
}
