using Microsoft.ML.OnnxRuntime;
using TransferApi.TestSupport;
using TransferApi.Training.Backbones;
using TransferApi.Training.Checkpoints;
using TransferApi.Training.Export;
using TransferApi.Training.Imaging;
using TransferApi.Training.Inference;
using Xunit.Abstractions;
using static TorchSharp.torch;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;

namespace TransferApi.Training.Tests;

public class ArchitectureTests(ITestOutputHelper output)
{
    /// <summary>Each architecture with TorchVision's parameter count without its classifier (torchvision.models, summed
    /// over parameters()).</summary>
    public static TheoryData<string, long> Architectures =>
        new()
        {
            { "resnet18", 11_689_512 - 513_000 },
            { "resnet34", 21_797_672 - 513_000 },
            { "resnet50", 25_557_032 - 2_049_000 },
            { "mobilenet_v2", 3_504_872 - 1_281_000 },
            { "vgg16", 14_714_688 },
            // 27,161,264 with AuxLogits (3,326,696) and fc (2,049,000).
            { "inception_v3", 27_161_264 - 3_326_696 - 2_049_000 },
        };

    [Theory]
    [MemberData(nameof(Architectures))]
    public void Every_tensor_has_the_name_and_shape_TorchVision_gives_it(string name, long _)
    {
        // TorchSharp's port of TorchVision's model definitions (the TorchVision package) is the reference; its
        // ImageNet classifier is what an imported checkpoint carries and the import drops.
        using nn.Module reference = name switch
        {
            "resnet18" => TorchSharp.torchvision.models.resnet18(),
            "resnet34" => TorchSharp.torchvision.models.resnet34(),
            "resnet50" => TorchSharp.torchvision.models.resnet50(),
            "mobilenet_v2" => TorchSharp.torchvision.models.mobilenet_v2(),
            "vgg16" => TorchSharp.torchvision.models.vgg16(),
            _ => TorchSharp.torchvision.models.inception_v3(),
        };
        var architecture = BackboneArchitecture.Find(name)!;
        using var ours = architecture.Create();
        Dictionary<string, string> Shapes(nn.Module module) =>
            module
                .state_dict()
                .Where(p =>
                    !p.Key.EndsWith("num_batches_tracked", StringComparison.Ordinal)
                    && !architecture.ClassifierPrefixes.Any(c => p.Key.StartsWith(c, StringComparison.Ordinal))
                )
                .ToDictionary(p => p.Key, p => string.Join("x", p.Value.shape));
        var (theirs, mine) = (Shapes(reference), Shapes(ours));
        Assert.Empty(theirs.Keys.Except(mine.Keys));
        Assert.Empty(mine.Keys.Except(theirs.Keys));
        Assert.All(theirs, p => Assert.Equal(p.Value, mine[p.Key]));
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void Imported_weights_give_torchvision_shapes_and_the_folded_network_the_same_features(
        string name,
        long torchVisionParameters
    )
    {
        var architecture = BackboneArchitecture.Find(name)!;
        using var backbone = Import(architecture, RandomWeights.PyTorchFile(RandomWeights.StateDict(architecture)));
        Assert.Equal(torchVisionParameters, backbone.ParameterCount);
        Assert.Equal(architecture.Stages, backbone.Stages);

        using var pixels = backbone.Preprocessor.ToTensor(Photos(2));
        Assert.Equal(
            [2, 3, architecture.DefaultPreprocessing.InputSize, architecture.DefaultPreprocessing.InputSize],
            pixels.shape
        );
        using var folded = backbone.Forward(pixels);
        Assert.Equal([2, architecture.FeatureSize], folded.shape);
        using (inference_mode())
        {
            using var unfolded = backbone.Network.call(pixels);
            var (difference, largest) = (
                folded.sub(unfolded).abs().max().item<float>(),
                unfolded.abs().max().item<float>()
            );
            output.WriteLine(
                $"{name}: folded vs unfolded max |difference| {difference:E2}, features up to {largest:F3}"
            );
            Assert.True(largest > 1e-3, $"features look degenerate ({largest})");
            Assert.True(difference < 1e-4, $"folded and unfolded features differ by {difference}");
            for (var stage = 0; stage < backbone.Stages; stage++)
            {
                using var foldedPrefix = backbone.Activations(pixels, stage);
                using var unfoldedPrefix = backbone.Network.Prefix(pixels, stage);
                Assert.True(
                    foldedPrefix.sub(unfoldedPrefix).abs().max().item<float>() < 1e-4,
                    $"activations entering stage {stage} differ"
                );
            }
        }
        // The trainable tail continues from the frozen prefix to the same features.
        using var tail = backbone.CreateTail(1);
        tail.eval();
        using var activations = backbone.Activations(pixels, backbone.Stages - 1);
        using var mode = inference_mode();
        using var split = tail.call(activations);
        Assert.True(split.sub(folded).abs().max().item<float>() < 1e-4, "prefix + tail differs from the whole network");
        Assert.Equal(
            backbone.Network.StageParameters(backbone.Stages - 1).Sum(p => p.numel()),
            tail.parameters().Sum(p => p.numel())
        );
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void The_onnx_export_of_each_architecture_answers_as_TorchSharp_does_in_onnx_runtime(string name, long _)
    {
        var architecture = BackboneArchitecture.Find(name)!;
        using var backbone = Import(architecture, RandomWeights.PyTorchFile(RandomWeights.StateDict(architecture)));
        var images = Photos(2);
        using var classifier = new ImageClassifier(backbone, RandomHead(backbone, images));
        var expected = classifier.Score(classifier.Decode(images), images.Count).Select(s => s.Probabilities).ToArray();

        using var session = new InferenceSession(
            ModelExport.Write(backbone, classifier.Checkpoint, ExportFormat.Onnx).Bytes
        );
        var size = architecture.DefaultPreprocessing.InputSize;
        var pixels = new DenseTensor(
            backbone.Preprocessor.DecodePlanar(images, normalized: false),
            [images.Count, 3, size, size]
        );
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExport.InputName, pixels)]);
        var actual = results.Single().AsTensor<float>().ToArray();
        var worst = expected
            .SelectMany((row, i) => row.Select((p, c) => Math.Abs(p - actual[i * row.Length + c])))
            .Max();
        output.WriteLine(
            $"{name}: ONNX Runtime vs TorchSharp, largest probability "
                + $"difference {worst:E2}; probabilities {string.Join(" ", expected[0].Select(p => p.ToString("F3")))}"
        );
        Assert.True(
            expected.Max(row => row.Max()) > 0.4f && expected.All(row => row.Max() < 0.99f),
            "probabilities are uniform or saturated; the comparison would show little"
        );
        Assert.True(worst < 1e-4, $"largest probability difference {worst}");
    }

    /// <summary>A 5-class linear head scaled so its probabilities stay informative on these features.</summary>
    private static ModelCheckpoint RandomHead(Backbone backbone, List<byte[]> images)
    {
        using var features = backbone.ExtractFeatures(images);
        // Weights scaled so these images' logits spread by 2 across classes: probabilities neither uniform nor
        // saturated, so feature errors would show.
        using var weights = randn(5, backbone.FeatureSize, generator: new Generator(11));
        using (var logits = features.matmul(weights.t()))
            weights.mul_(2f / logits.std(1).mean().item<float>());
        using var head = nn.Linear(backbone.FeatureSize, 5);
        using (no_grad())
        {
            head.weight!.copy_(weights);
        }
        return ModelCheckpoint.FromHead(
            backbone.Id,
            backbone.Preprocessor.Spec,
            ["a", "b", "c", "d", "e"],
            backbone.FeatureSize,
            HeadSpec.Linear,
            head
        );
    }

    [Fact]
    public void Safetensors_and_TorchSharp_files_load_the_same_weights_as_PyTorch_files()
    {
        var architecture = BackboneArchitecture.MobileNetV2;
        var state = RandomWeights.StateDict(architecture);
        using var fromPyTorch = Import(architecture, RandomWeights.PyTorchFile(state));
        using var fromSafetensors = Import(architecture, RandomWeights.SafetensorsFile(state));
        using var fromTorchSharp = Import(architecture, BackboneCatalog.SaveWeights(fromPyTorch.Network));
        using var pixels = fromPyTorch.Preprocessor.ToTensor(Photos(1));
        using var expected = fromPyTorch.Forward(pixels);
        using var safetensors = fromSafetensors.Forward(pixels);
        using var torchSharp = fromTorchSharp.Forward(pixels);
        Assert.True(
            expected.allclose(safetensors, rtol: 0, atol: 0) && expected.allclose(torchSharp, rtol: 0, atol: 0)
        );
    }

    [Fact]
    public void Mismatched_weights_are_refused_naming_the_first_bad_key()
    {
        var resnet18 = BackboneArchitecture.ResNet18;
        WeightsRejectedException Refused(BackboneArchitecture architecture, Dictionary<string, Tensor> state) =>
            Assert.Throws<WeightsRejectedException>(() => WeightsImport.Load(architecture, state).Dispose());

        var resnet34 = RandomWeights.StateDict(BackboneArchitecture.ResNet34);
        var wrongArchitecture = Refused(resnet18, resnet34);
        Assert.Equal("layer1.2.bn1.bias", wrongArchitecture.Key);
        Assert.Contains("is not a parameter of resnet18", wrongArchitecture.Message);

        var state = RandomWeights.StateDict(resnet18);
        state["layer2.0.conv1.weight"] = zeros(128, 64, 5, 5);
        var wrongShape = Refused(resnet18, state);
        Assert.Equal("layer2.0.conv1.weight", wrongShape.Key);
        Assert.Contains("[128,64,5,5] but resnet18 needs [128,64,3,3]", wrongShape.Message);

        state = RandomWeights.StateDict(resnet18);
        state.Remove("layer4.1.bn2.running_var");
        Assert.Equal("layer4.1.bn2.running_var", Refused(resnet18, state).Key);

        state = RandomWeights.StateDict(resnet18);
        state["layer1.0.bn1.weight"] = full(64, float.NaN);
        Assert.Equal("layer1.0.bn1.weight", Refused(resnet18, state).Key);

        var pyTorch = RandomWeights.PyTorchFile(RandomWeights.StateDict(resnet18));
        var bomb = Assert.Throws<WeightsRejectedException>(() =>
            StateDictFile.Read(new MemoryStream(pyTorch), WeightsFormat.PyTorch, maxUnpackedBytes: pyTorch.Length / 2)
        );
        Assert.Contains("unpacks to", bomb.Message);

        var garbage = Assert.Throws<WeightsRejectedException>(() =>
            StateDictFile.Read(new MemoryStream("PK\u0003\u0004 not a zip"u8.ToArray()), WeightsFormat.PyTorch)
        );
        Assert.Contains("could not be read as a PyTorch state dict", garbage.Message);
    }

    [Fact]
    public void The_format_is_recognised_from_the_content()
    {
        var state = RandomWeights.StateDict(BackboneArchitecture.ResNet18);
        Assert.Equal(WeightsFormat.PyTorch, StateDictFile.Detect(new MemoryStream(RandomWeights.PyTorchFile(state))));
        Assert.Equal(
            WeightsFormat.Safetensors,
            StateDictFile.Detect(new MemoryStream(RandomWeights.SafetensorsFile(state)))
        );
        using var network = WeightsImport.Load(BackboneArchitecture.ResNet18, state);
        Assert.Equal(
            WeightsFormat.TorchSharp,
            StateDictFile.Detect(new MemoryStream(BackboneCatalog.SaveWeights(network)))
        );
    }

    private static Backbone Import(BackboneArchitecture architecture, byte[] file)
    {
        using var stream = new MemoryStream(file);
        var state = StateDictFile.Read(stream, StateDictFile.Detect(stream));
        return new Backbone(
            $"test-{architecture.Name}",
            WeightsImport.Load(architecture, state),
            new ImagePreprocessor(architecture.DefaultPreprocessing, new ImageLimits())
        );
    }

    private static List<byte[]> Photos(int count) =>
        LabeledPhotos.AntsAndBees(count).Take(count).Select(i => i.Bytes).ToList();
}
