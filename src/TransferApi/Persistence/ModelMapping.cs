using TransferApi.Training.Checkpoints;

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
            model.TailWeights
        );
}
