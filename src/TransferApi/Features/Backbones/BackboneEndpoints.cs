using Microsoft.AspNetCore.Http.HttpResults;
using TransferApi.Infrastructure;
using TransferApi.Training.Backbones;
using TransferApi.Training.Imaging;

namespace TransferApi.Features.Backbones;

/// <param name="Id">What a training job's `backbone` names.</param>
/// <param name="Architecture">The network's definition.</param>
/// <param name="Stages">Residual stages `unfreezeStages` can fine-tune (the last N).</param>
/// <param name="Source">Where the weights came from.</param>
/// <param name="Default">Whether jobs without a `backbone` use it.</param>
public sealed record BackboneResponse(string Id, string Architecture, int InputSize, int FeatureSize, int Stages, PreprocessingSpec Preprocessing,
    long ParameterCount, string Source, bool Default);

public static class BackboneEndpoints
{
    public static RouteGroupBuilder MapBackboneEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/backbones").WithTags("Backbones");
        group.MapGet("/", List).WithSummary("The pretrained backbones jobs can train on");
        return group;
    }

    internal static Ok<IReadOnlyList<BackboneResponse>> List(BackboneRegistry backbones) =>
        TypedResults.Ok<IReadOnlyList<BackboneResponse>>(BackboneCatalog.Ids.Select(id =>
        {
            var backbone = backbones.Get(id);
            return new BackboneResponse(backbone.Id, $"ResNet, basic blocks [{string.Join(",", backbone.Network.BlocksPerStage)}] (torchvision layer names)",
                backbone.Preprocessor.Spec.InputSize, backbone.FeatureSize, backbone.Network.BlocksPerStage.Count, backbone.Preprocessor.Spec, backbone.ParameterCount,
                "built in: the ImageNet ResNet18 of the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18 0.23.1 (ONNX)",
                id == BackboneCatalog.ResNet18ImageNet);
        }).ToList());
}
