using TransferApi.Training.Backbones;
using static TorchSharp.torch;

namespace TransferApi.Training.Tests;

/// <summary>Backbones:Precision: when bfloat16 is chosen, and that its features stand in for float32 ones.</summary>
[Collection(BackboneCollection.Name)]
public class PrecisionTests(BackboneFixture fixture)
{
    [Theory]
    [InlineData(40, 110, 0.9997, BackbonePrecision.Bf16)]
    [InlineData(40, 30, 0.9999, BackbonePrecision.Fp32)] // slower (a processor without AMX)
    [InlineData(40, 43, 0.9999, BackbonePrecision.Fp32)] // within the noise of a few seconds' measurement
    [InlineData(40, 110, 0.995, BackbonePrecision.Fp32)] // faster, but the features disagree
    public void Auto_keeps_bfloat16_only_when_it_is_clearly_faster_and_agrees(
        double fp32,
        double bf16,
        double cosine,
        BackbonePrecision chosen
    )
    {
        var choice = PrecisionChoice.Decide(fp32, bf16, cosine);
        Assert.Equal(chosen, choice.Chosen);
        Assert.Equal((fp32, bf16, cosine), (choice.Fp32ImagesPerSecond, choice.Bf16ImagesPerSecond, choice.Cosine));
    }

    [Fact]
    public void Bfloat16_features_and_activations_agree_with_float32_ones_and_come_back_as_float32()
    {
        var photos = LabeledPhotos.AntsAndBees(4, folder: "val").Select(i => i.Bytes).ToList();
        using var bf16 = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);
        Assert.Equal(BackbonePrecision.Bf16, bf16.UsePrecision(BackbonePrecision.Bf16).Chosen);
        using var pixels = fixture.Backbone.Preprocessor.ToTensor(photos);
        using var expected = fixture.Backbone.Forward(pixels);
        using var actual = bf16.Forward(pixels);
        Assert.Equal(ScalarType.Float32, actual.dtype);
        using var cosine = nn.functional.cosine_similarity(actual, expected, 1);
        Assert.True(cosine.min().item<float>() >= PrecisionChoice.MinCosine, $"cosine {cosine.min().item<float>()}");
        Assert.False(actual.allclose(expected, rtol: 0, atol: 0)); // it did run in bfloat16

        // A fine-tuning tail takes the frozen prefix's activations in float32 either way.
        using var activations = bf16.Activations(pixels, bf16.Stages - 1);
        Assert.Equal(ScalarType.Float32, activations.dtype);
        using var reference = fixture.Backbone.Activations(pixels, bf16.Stages - 1);
        using var flat = nn.functional.cosine_similarity(activations.flatten(1), reference.flatten(1), 1);
        Assert.True(flat.min().item<float>() >= 0.99, $"activation cosine {flat.min().item<float>()}");
    }

    [Fact]
    public void Auto_measures_only_where_the_processor_has_bfloat16_instructions()
    {
        using var backbone = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);
        var choice = backbone.UsePrecision(BackbonePrecision.Auto);
        Assert.Equal(choice, backbone.Precision);
        if (!PrecisionChoice.ProcessorHasBf16())
        {
            Assert.Equal((BackbonePrecision.Fp32, (double?)null), (choice.Chosen, choice.Bf16ImagesPerSecond));
            return;
        }
        Assert.Equal(
            PrecisionChoice.Decide(
                choice.Fp32ImagesPerSecond!.Value,
                choice.Bf16ImagesPerSecond!.Value,
                choice.Cosine!.Value
            ),
            choice
        );
        Assert.True(choice.Cosine >= PrecisionChoice.MinCosine, $"probe cosine {choice.Cosine}");
    }

    [Fact]
    public void Fp32_is_the_loaded_backbone_unchanged()
    {
        using var backbone = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);
        Assert.Equal(BackbonePrecision.Fp32, backbone.UsePrecision(BackbonePrecision.Fp32).Chosen);
        using var pixels = fixture.Backbone.Preprocessor.ToTensor(
            LabeledPhotos.AntsAndBees(1).Select(i => i.Bytes).ToList()
        );
        using var a = backbone.Forward(pixels);
        using var b = fixture.Backbone.Forward(pixels);
        Assert.True(a.allclose(b, rtol: 0, atol: 0));
    }
}
