using TransferApi.Persistence;
using TransferApi.Training.Imaging;
using TransferApi.Training.Training;

namespace TransferApi.Features.Models;

/// <summary>Converts between the stored model row and the training core's checkpoint.</summary>
public static class ModelMapping
{
    public static ModelPreprocessing ToEntity(PreprocessingSpec spec) => new()
    {
        InputSize = spec.InputSize, Resize = spec.Resize, ChannelOrder = spec.ChannelOrder, Mean = spec.Mean, Scale = spec.Scale,
    };

    public static ModelCheckpoint ToCheckpoint(TrainedModel model) => new(
        model.Backbone,
        new PreprocessingSpec(model.Preprocessing.InputSize, model.Preprocessing.Resize, model.Preprocessing.ChannelOrder, model.Preprocessing.Mean, model.Preprocessing.Scale),
        model.Labels, model.FeatureSize, model.Head, model.HeadWeights, model.FineTunedStages, model.TailWeights);
}
