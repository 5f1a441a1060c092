using TransferApi.Training.Inference;
using static TorchSharp.torch;

namespace TransferApi.Training.Tests;

[Collection(BackboneCollection.Name)]
public class FineTuningTests(BackboneFixture fixture)
{
    private static List<LabeledImage> Images(int perClass) => LabeledPhotos.AntsAndBees(perClass);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void Prefix_then_pretrained_tail_equals_the_whole_network(int stages)
    {
        var images = Images(2).Select(i => i.Bytes).ToList();
        using var whole = fixture.Backbone.ExtractFeatures(images);
        using var tail = fixture.Backbone.CreateTail(stages);
        tail.eval();
        using var activations = fixture.Backbone.Activations(images, 4 - stages);
        using var mode = inference_mode();
        using var split = tail.call(activations);
        Assert.True(whole.sub(split).abs().max().item<float>() < 1e-4);
    }

    [Fact]
    public void The_folded_channels_last_network_gives_the_unfolded_features_and_activations()
    {
        var images = Images(2).Select(i => i.Bytes).ToList();
        using var pixels = fixture.Backbone.Preprocessor.ToTensor(images);
        using var folded = fixture.Backbone.Forward(pixels);
        using var mode = inference_mode();
        using var unfolded = fixture.Backbone.Network.call(pixels);
        Assert.True(folded.sub(unfolded).abs().max().item<float>() < 1e-4, "features differ");
        foreach (var stage in new[] { 1, 2, 3 })
        {
            using var foldedPrefix = fixture.Backbone.Activations(pixels, stage);
            using var unfoldedPrefix = fixture.Backbone.Network.Prefix(pixels, stage);
            var (difference, largest) = (
                foldedPrefix.sub(unfoldedPrefix).abs().max().item<float>(),
                unfoldedPrefix.abs().max().item<float>()
            );
            // Relative to the activations' size: summation order alone moves float32 sums of values near 30 by
            // 1e-4 (oneDNN's SSE4.1 kernels, on AMD); a wrong kernel is off by percent.
            Assert.True(
                difference < 1e-5 * Math.Max(1, largest),
                $"activations entering stage {stage} differ by {difference} (largest {largest})"
            );
        }
    }

    [Fact]
    public void Fine_tuning_trains_the_last_stage_only_and_keeps_its_norm_statistics()
    {
        var layer4Before = fixture.Backbone.Network.StageParameters(3).Select(p => p.clone()).ToList();
        var layer3Before = fixture.Backbone.Network.StageParameters(2).Select(p => p.clone()).ToList();
        var options = new TrainingOptions
        {
            Epochs = 2,
            BatchSize = 4,
            ValidationFraction = 0,
            UnfreezeStages = 1,
            FineTuneEpochs = 2,
            LearningRate = 0.01,
        };
        var observer = new RecordingObserver();
        var result = new TransferLearningTrainer(fixture.Backbone).Train(
            Images(4),
            options,
            observer,
            CancellationToken.None
        );

        Assert.Equal(1, result.FineTuned);
        Assert.Equal([1, 2, 3, 4], result.Metrics.Select(m => m.Epoch));
        Assert.Contains(observer.Progress, p => p.Stage == TrainingStage.FineTuning);
        using var tail = result.Checkpoint.LoadTail(fixture.Backbone)!;
        var tuned = tail.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var pretrained = fixture.Backbone.Network.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal(
            tuned.Keys.Order(),
            pretrained.Keys.Where(k => k.StartsWith("layer4.", StringComparison.Ordinal)).Order()
        );
        Assert.Contains(tuned, t => !t.Value.allclose(pretrained[t.Key]));
        // Batch-norm running statistics stay the ImageNet ones, and the shared frozen backbone is untouched.
        var tunedBuffers = tail.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        var pretrainedBuffers = fixture.Backbone.Network.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        Assert.All(tunedBuffers.Where(b => b.Key.EndsWith("running_mean", StringComparison.Ordinal)), b =>
            Assert.True(b.Value.allclose(pretrainedBuffers[b.Key], rtol: 0, atol: 0))
        );
        Assert.All(fixture.Backbone.Network.StageParameters(3).Zip(layer4Before), p =>
            Assert.True(p.First.allclose(p.Second, rtol: 0, atol: 0))
        );
        Assert.All(fixture.Backbone.Network.StageParameters(2).Zip(layer3Before), p =>
            Assert.True(p.First.allclose(p.Second, rtol: 0, atol: 0))
        );
        Assert.All(fixture.Backbone.Network.parameters(), p => Assert.False(p.requires_grad));

        using var classifier = new ImageClassifier(fixture.Backbone, result.Checkpoint);
        var predictions = classifier.Classify(Images(1).Select(i => i.Bytes).ToList(), 2);
        Assert.All(predictions, p => Assert.Equal(1.0, p.Sum(x => x.Probability), 4));
    }

    [Fact]
    public void Fine_tuning_is_kept_only_when_it_beats_the_frozen_model_on_validation()
    {
        // A learning rate this high wrecks the pretrained stage: validation loss gets worse, so the frozen model stays.
        var options = new TrainingOptions
        {
            Epochs = 5,
            BatchSize = 4,
            ValidationFraction = 0.25,
            UnfreezeStages = 1,
            FineTuneEpochs = 2,
            LearningRate = 0.05,
            FineTuneLrFactor = 1,
        };
        var result = new TransferLearningTrainer(fixture.Backbone).Train(
            Images(6),
            options,
            new RecordingObserver(),
            CancellationToken.None
        );
        var headOnlyBest = result.Metrics.Take(5).Min(m => m.ValLoss!.Value);
        if (result.FineTuned == 0)
        {
            Assert.Null(result.Checkpoint.TailWeights);
            Assert.True(result.Metrics.Skip(5).All(m => m.ValLoss >= result.Metrics[4].ValLoss));
        }
        else
        {
            Assert.True(
                result.Metrics.Skip(5).Min(m => m.ValLoss!.Value) < result.Metrics[4].ValLoss,
                $"kept fine-tuning that did not improve (head best {headOnlyBest})"
            );
        }
    }
}
