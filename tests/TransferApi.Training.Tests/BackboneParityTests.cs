using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TransferApi.TestSupport;
using TransferApi.Training.Backbones;
using TransferApi.Training.Imaging;

namespace TransferApi.Training.Tests;

[Collection(BackboneCollection.Name)]
public class BackboneParityTests(BackboneFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
{
    private static readonly string ModelDirectory = BackboneCatalog.DefaultModelDirectory;

    private static IReadOnlyList<byte[]> SampleImages() =>
        TestData
            .AntsBeesImages("val", "ants", 3)
            .Concat(TestData.AntsBeesImages("val", "bees", 3))
            .Select(File.ReadAllBytes)
            .ToList();

    [Fact]
    public void TorchSharp_features_match_onnx_runtime_on_real_photos()
    {
        var images = SampleImages();
        using var pixels = fixture.Backbone.Preprocessor.ToTensor(images);
        using var ours = fixture.Backbone.Forward(pixels);

        using var session = new InferenceSession(Path.Combine(ModelDirectory, CntkResNet18Onnx.ModelFile));
        var input = session.InputMetadata.Keys.Single();
        var maxDifference = 0f;
        var maxFeature = 0f;
        for (var i = 0; i < images.Count; i++)
        {
            var single = pixels[i].unsqueeze(0).contiguous().data<float>().ToArray();
            using var results = session.Run([
                NamedOnnxValue.CreateFromTensor(input, new DenseTensor<float>(single, [1, 3, 224, 224])),
            ]);
            var reference = results.Single().AsEnumerable<float>().ToArray();
            var mine = ours[i].data<float>().ToArray();
            Assert.Equal(reference.Length, mine.Length);
            for (var j = 0; j < mine.Length; j++)
            {
                maxDifference = Math.Max(maxDifference, Math.Abs(reference[j] - mine[j]));
                maxFeature = Math.Max(maxFeature, Math.Abs(reference[j]));
            }
        }
        output.WriteLine(
            $"{images.Count} photos: max |TorchSharp - ONNX Runtime| = {maxDifference:E2} on features up to "
                + $"{maxFeature:F2}"
        );
        Assert.True(maxFeature > 1, $"features look degenerate (max {maxFeature})");
        Assert.True(maxDifference < 1e-4, $"max abs difference {maxDifference} vs ONNX Runtime");
    }

    [Fact]
    public void Preprocessing_equals_the_packaged_preprocess_model()
    {
        var images = SampleImages();
        // The same resize and crop, but plain RGB without the mean: the packaged model's own input.
        var rgbSpec = PreprocessingSpec.CntkResNet with { ChannelOrder = "RGB" };
        var rgbPreprocessor = new ImagePreprocessor(rgbSpec, new ImageLimits(), new float[3 * 224 * 224]);
        using var rgb = rgbPreprocessor.ToTensor(images);
        using var ours = fixture.Backbone.Preprocessor.ToTensor(images);

        using var session = new InferenceSession(Path.Combine(ModelDirectory, CntkResNet18Onnx.PreprocessFile));
        var input = session.InputMetadata.Keys.Single();
        for (var i = 0; i < images.Count; i++)
        {
            var single = rgb[i].contiguous().data<float>().ToArray();
            using var results = session.Run([
                NamedOnnxValue.CreateFromTensor(input, new DenseTensor<float>(single, [1, 3, 224, 224])),
            ]);
            var reference = results.Single().AsEnumerable<float>().ToArray();
            var mine = ours[i].contiguous().data<float>().ToArray();
            var worst = reference.Zip(mine, (r, m) => Math.Abs(r - m)).Max();
            Assert.True(worst < 1e-4, $"image {i}: preprocessing differs by {worst}");
        }
    }

    [Fact]
    public void Backbone_is_the_packaged_resnet18_with_blocks_2_2_2_3()
    {
        var names = fixture.Backbone.Network.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("layer4.2.conv2.weight", names);
        Assert.DoesNotContain("layer4.3.conv1.weight", names);
        Assert.DoesNotContain("layer3.2.conv1.weight", names);
        Assert.Contains("layer2.0.downsample.0.weight", names);
        Assert.InRange(fixture.Backbone.ParameterCount, 15_000_000, 17_000_000);
        Assert.All(fixture.Backbone.Network.parameters(), p => Assert.False(p.requires_grad));
    }
}
