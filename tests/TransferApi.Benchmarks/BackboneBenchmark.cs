using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TransferApi.TestSupport;
using TransferApi.Training;
using TransferApi.Training.Backbones;
using TransferApi.Training.Training;
using static TorchSharp.torch;

namespace TransferApi.Benchmarks;

internal static class BackboneBenchmark
{
    public static void Run(int repeats)
    {
        // Feature-pass speed of the TorchSharp backbone against ONNX Runtime on the same weights, side by side in one
        // run, and the wall time of a 10-epoch job on ants-bees train/ split into feature extraction and head training.
        using var backbone = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);
        var trainImages = new[] { "ants", "bees" }.SelectMany(label => TestData.AntsBeesImages("train", label)
            .Select(path => new LabeledImage(label, DataSplit.Unassigned, File.ReadAllBytes(path)))).ToList();
        var sample = trainImages.Take(64).Select(i => i.Bytes).ToList();

        double Median(Func<double> measure) => Enumerable.Range(0, repeats).Select(_ => measure()).Order().ElementAt(repeats / 2);

        var preprocessRate = Median(() =>
        {
            var clock = Stopwatch.StartNew();
            using var pixels = backbone.Preprocessor.ToTensor(sample);
            return sample.Count / clock.Elapsed.TotalSeconds;
        });
        Console.WriteLine($"decode + preprocess (parallel over {Environment.ProcessorCount} cores): {preprocessRate,7:F1} images/s");

        using var batch = backbone.Preprocessor.ToTensor(sample.Take(32).ToList());
        var modelPath = Path.Combine(BackboneCatalog.DefaultModelDirectory, CntkResNet18Onnx.ModelFile);
        var single = Enumerable.Range(0, 32).Select(i => batch[i].unsqueeze(0).contiguous().data<float>().ToArray()).ToList();
        // The packaged ONNX file fixes its input at batch 1, so ONNX Runtime runs batch 1 only.
        Console.WriteLine("threads | TorchSharp batch 1 | TorchSharp batch 32 | ONNX Runtime batch 1 | ratio batch 1 | ratio batch 32 : ORT 1");
        foreach (var threads in new[] { 1, 2 })
        {
            TorchRuntime.SetThreads(threads);
            using (var warm = backbone.Forward(batch)) { }
            var torchRate = Median(() =>
            {
                var clock = Stopwatch.StartNew();
                using var features = backbone.Forward(batch);
                return 32 / clock.Elapsed.TotalSeconds;
            });
            var singles = Enumerable.Range(0, 32).Select(i => batch[i].unsqueeze(0).contiguous()).ToList();
            var torchSingleRate = Median(() =>
            {
                var clock = Stopwatch.StartNew();
                foreach (var image in singles)
                {
                    using var features = backbone.Forward(image);
                }
                return singles.Count / clock.Elapsed.TotalSeconds;
            });
            singles.ForEach(t => t.Dispose());
            using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1 };
            using var session = new InferenceSession(modelPath, options);
            var input = session.InputMetadata.Keys.Single();
            var run = () =>
            {
                foreach (var image in single)
                {
                    using var result = session.Run([NamedOnnxValue.CreateFromTensor(input, new DenseTensor<float>(image, [1, 3, 224, 224]))]);
                }
            };
            run();
            var ortRate = Median(() =>
            {
                var clock = Stopwatch.StartNew();
                run();
                return single.Count / clock.Elapsed.TotalSeconds;
            });
            Console.WriteLine($"{threads,7} | {torchSingleRate,12:F1} img/s | {torchRate,13:F1} img/s | {ortRate,14:F1} img/s | {torchSingleRate / ortRate,13:F2}x | {torchRate / ortRate,8:F2}x");
        }

        TorchRuntime.SetThreads(Environment.ProcessorCount);
        var observer = new NullObserver();
        var result = new TransferLearningTrainer(backbone).Train(trainImages, new TrainingOptions { Epochs = 10 }, observer, CancellationToken.None);
        Console.WriteLine($"10-epoch job on ants-bees train/ ({trainImages.Count} images): feature extraction {result.Timings.FeatureExtraction.TotalSeconds:F2} s "
            + $"({result.Timings.ImagesPerSecond:F1} images/s incl. decode), head training {result.Timings.HeadTraining.TotalSeconds:F3} s, "
            + $"val accuracy {result.Metrics[^1].ValAccuracy:P1}");
        Console.WriteLine($"peak working set {Process.GetCurrentProcess().PeakWorkingSet64 / 1024.0 / 1024:F0} MiB");

    }
}

internal sealed class NullObserver : ITrainingObserver
{
    public void OnProgress(TrainingProgress progress) { }
    public void OnEpochCompleted(EpochMetrics metrics) { }
    public void OnFeaturesComputed(IReadOnlyList<ComputedFeatures> features) { }
    public void OnCheckpoint(TrainingCheckpoint checkpoint) { }
}
