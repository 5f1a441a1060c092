using TransferApi.Training.Checkpoints;
using TransferApi.Training.Evaluation;

namespace TransferApi.Persistence;

/// <summary>Converts between the stored model row and the training core's checkpoint.</summary>
public static class ModelMapping
{
    public static ModelCheckpoint ToCheckpoint(TrainedModel model) =>
        new(
            model.Backbone,
            model.Preprocessing,
            model.Labels,
            model.FeatureSize,
            model.Head,
            model.HeadWeights,
            model.FineTunedStages,
            model.TailWeights,
            model.Calibration?.Temperature ?? 1,
            model.Novelty is { } novelty && model.NoveltyBank is { } bank
                ? new NoveltyModel(novelty.K, novelty.Dimension, bank, novelty.ReferenceScores, novelty.Reference)
                : null,
            model.Thresholds
        );
}
