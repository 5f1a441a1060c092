using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp.PyBridge;
using TransferApi.TestSupport;
using TransferApi.Training.Checkpoints;
using TransferApi.Training.Export;
using TransferApi.Training.Heads;
using TransferApi.Training.Inference;
using static TorchSharp.torch;

namespace TransferApi.Training.Tests;

/// <summary>Every export format holds the very model /predict serves: same calibrated probabilities on the same
/// images.</summary>
[Collection(BackboneCollection.Name)]
public class ExportTests(BackboneFixture fixture)
{
    public static TheoryData<string> Models => ["linear", "mlp", "fine-tuned"];

    private ModelCheckpoint Train(string kind)
    {
        var images = LabeledPhotos.AntsAndBees(4, DataSplit.Train);
        var options = new TrainingOptions
        {
            Epochs = 3,
            BatchSize = 4,
            LearningRate = 0.01,
            ValidationFraction = 0,
        } with
        {
            Head = kind == "mlp" ? new HeadSpec(HeadKind.Mlp, 16, 0.2) : HeadSpec.Linear,
            UnfreezeStages = kind == "fine-tuned" ? 1 : 0,
            FineTuneEpochs = 1,
        };
        var checkpoint = new TransferLearningTrainer(fixture.Backbone)
            .Train(images, options, new RecordingObserver(), CancellationToken.None)
            .Checkpoint;
        Assert.Equal(kind == "fine-tuned" ? 1 : 0, checkpoint.FineTunedStages);
        // A calibrated model (too few images here to fit one): every export must divide by its temperature.
        return checkpoint with { Temperature = 2.5 };
    }

    private static List<byte[]> HeldOut() =>
        TestData
            .AntsBeesImages("val", "ants", 2)
            .Concat(TestData.AntsBeesImages("val", "bees", 2))
            .Select(File.ReadAllBytes)
            .ToList();

    [Theory]
    [MemberData(nameof(Models))]
    public void The_onnx_export_gives_the_predict_probabilities_in_onnx_runtime(string kind)
    {
        var checkpoint = Train(kind);
        var images = HeldOut();
        using var classifier = new ImageClassifier(fixture.Backbone, checkpoint);
        var expected = classifier.Score(classifier.Decode(images), images.Count).Select(s => s.Probabilities).ToArray();

        var (fileName, onnx) = ModelExport.Write(fixture.Backbone, checkpoint, ExportFormat.Onnx);
        Assert.Equal("model.onnx", fileName);
        using var session = new InferenceSession(onnx);
        var pixels = new DenseTensor<float>(
            fixture.Backbone.Preprocessor.DecodePlanar(images, normalized: false),
            [images.Count, 3, 224, 224]
        );
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExport.InputName, pixels)]);
        var actual = results.Single(r => r.Name == OnnxExport.OutputName).AsTensor<float>().ToArray();

        var worst = expected
            .SelectMany((row, i) => row.Select((p, c) => Math.Abs(p - actual[i * row.Length + c])))
            .Max();
        Assert.True(worst < 1e-5, $"largest probability difference {worst}");
    }

    [Theory]
    [InlineData(ExportFormat.TorchSharp)]
    [InlineData(ExportFormat.PyTorch)]
    public void The_torchsharp_and_pytorch_exports_load_into_a_fresh_network_that_answers_the_same(ExportFormat format)
    {
        var checkpoint = Train("fine-tuned");
        var images = HeldOut();
        using var classifier = new ImageClassifier(fixture.Backbone, checkpoint);
        var expected = classifier.Score(classifier.Decode(images), images.Count).Select(s => s.Probabilities).ToArray();
        var (_, bytes) = ModelExport.Write(fixture.Backbone, checkpoint, format);

        // A network of the same shape that knows nothing of the trained weights: a zero head, a pretrained tail.
        var untrained = checkpoint with
        {
            HeadWeights = ModelCheckpoint.Save(
                ClassifierHead.Create(checkpoint.Head, checkpoint.FeatureSize, checkpoint.Labels.Count, seed: 1)
            ),
            FineTunedStages = 0,
            TailWeights = null,
            Temperature = 1,
        };
        using var fresh = new ExportedClassifier(fixture.Backbone, untrained);
        using (var stream = new MemoryStream(bytes))
        {
            if (format == ExportFormat.PyTorch)
                fresh.load_py(stream);
            else
                fresh.load(stream);
        }
        using var pixels = tensor(
            fixture.Backbone.Preprocessor.DecodePlanar(images, normalized: false),
            [images.Count, 3, 224, 224]
        );
        using var mode = inference_mode();
        using var probabilities = fresh.call(pixels);
        var actual = probabilities.data<float>().ToArray();
        var worst = expected
            .SelectMany((row, i) => row.Select((p, c) => Math.Abs(p - actual[i * row.Length + c])))
            .Max();
        Assert.True(worst < 1e-5, $"{format}: largest probability difference {worst}");
    }
}
