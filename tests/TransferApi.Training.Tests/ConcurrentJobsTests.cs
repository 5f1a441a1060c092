namespace TransferApi.Training.Tests;

/// <summary>A worker may run several jobs at once on one shared, frozen backbone: they must not disturb each
/// other.</summary>
[Collection(BackboneCollection.Name)]
public class ConcurrentJobsTests(BackboneFixture fixture)
{
    [Fact]
    public async Task Two_jobs_training_at_once_on_the_shared_backbone_get_the_results_each_gets_alone()
    {
        var images = LabeledPhotos.AntsAndBees(5);
        var frozen = new TrainingOptions
        {
            Epochs = 5,
            BatchSize = 4,
            LearningRate = 0.01,
            ValidationFraction = 0.4,
            Head = new HeadSpec(HeadKind.Mlp, 16, 0.2),
        };
        var fineTuned = frozen with { UnfreezeStages = 1, FineTuneEpochs = 2, Seed = 7 };
        TrainingResult Run(TrainingOptions options) =>
            new TransferLearningTrainer(fixture.Backbone).Train(
                images,
                options,
                new RecordingObserver(),
                CancellationToken.None
            );

        var alone = (Frozen: Run(frozen), FineTuned: Run(fineTuned));
        var together = await Task.WhenAll(Task.Run(() => Run(frozen)), Task.Run(() => Run(fineTuned)));

        foreach (var (expected, actual) in new[] { (alone.Frozen, together[0]), (alone.FineTuned, together[1]) })
        {
            Assert.Equal(expected.Metrics.Select(m => m.Epoch), actual.Metrics.Select(m => m.Epoch));
            Assert.All(expected.Metrics.Zip(actual.Metrics), pair =>
                Assert.Equal(pair.First.TrainLoss, pair.Second.TrainLoss, 1e-6)
            );
            Assert.Equal(expected.Checkpoint.HeadWeights, actual.Checkpoint.HeadWeights);
        }
    }
}
