using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TransferApi.TestSupport;
using TransferApi.Training;
using TransferApi.Training.Backbones;
using TransferApi.Training.Checkpoints;
using TransferApi.Training.Export;
using TransferApi.Training.Heads;
using TransferApi.Training.Imaging;

namespace TransferApi.Benchmarks;

internal static class BackboneBenchmark
{
    public static void Run(int repeats)
    {
        // Forward-pass speed of the frozen TorchSharp backbone against ONNX Runtime on the same ResNet18 weights, side
        // by side in one run; the same for every registrable architecture (TorchSharp only, random weights); then the
        // wall time of a 10-epoch job on ants-bees train/ split into feature extraction and head training.
        using var backbone = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);
        var trainImages = new[] { "ants", "bees" }
            .SelectMany(label =>
                TestData
                    .AntsBeesImages("train", label)
                    .Select(path => new LabeledImage(label, DataSplit.Unassigned, File.ReadAllBytes(path)))
            )
            .ToList();
        var sample = trainImages.Take(64).Select(i => i.Bytes).ToList();

        var preprocessRate = Median(repeats, () =>
        {
            var clock = Stopwatch.StartNew();
            using var pixels = backbone.Preprocessor.ToTensor(sample);
            return sample.Count / clock.Elapsed.TotalSeconds;
        });
        Console.WriteLine(
            $"decode + preprocess (parallel over {Environment.ProcessorCount} cores): {preprocessRate, 7:F1} images/s"
        );

        // ONNX Runtime runs the same weights twice over: the file of the NuGet package (its input is fixed at batch 1)
        // and TransferApi's own ONNX export of the network (any batch; it adds the input normalization and a 2-class
        // head).
        var images = sample.Take(32).ToList();
        using var batch = backbone.Preprocessor.ToTensor(images);
        var raw = backbone.Preprocessor.DecodePlanar(images, normalized: false);
        var packaged = Path.Combine(BackboneCatalog.DefaultModelDirectory, CntkResNet18Onnx.ModelFile);
        var exported = ExportedOnnx(backbone);
        Console.WriteLine();
        Console.WriteLine(
            "ResNet18 (ImageNet weights of the package), images/s; ratio = TorchSharp / ONNX Runtime, measured side "
                + "by side"
        );
        Console.WriteLine(
            "threads | batch | TorchSharp | ORT (export) | ratio | ORT (package file) | ratio   (medians of rounds "
                + "that alternate the runtimes)"
        );
        foreach (var threads in new[] { 1, 2 })
        {
            TorchRuntime.SetThreads(threads);
            foreach (var size in new[] { 1, 32 })
            {
                using var exportSession = Session(exported, threads);
                using var packagedSession = size == 1 ? Session(packaged, threads) : null;
                var packagedInput = batch.contiguous().data<float>().ToArray();
                // The machine's speed drifts: each round measures every runtime back to back, and ratios are taken per
                // round.
                var rounds = Enumerable
                    .Range(0, repeats)
                    .Select(_ =>
                        (
                            Torch: TorchSharpRate(backbone, batch, size, 1),
                            Export: OnnxRate(exportSession, raw, size, 1),
                            Packaged: packagedSession is null
                                ? double.NaN
                                : OnnxRate(packagedSession, packagedInput, 1, 1)
                        )
                    )
                    .ToList();
                double Mid(Func<(double Torch, double Export, double Packaged), double> pick) =>
                    rounds.Select(pick).Order().ElementAt(rounds.Count / 2);
                Console.WriteLine(
                    $"{threads, 7} | {size, 5} | {Mid(r => r.Torch), 10:F1} | {Mid(r => r.Export), 12:F1} | "
                        + $"{Mid(r => r.Torch / r.Export), 4:F2}x | "
                        + (
                            size == 1
                                ? $"{Mid(r => r.Packaged), 18:F1} | {Mid(r => r.Torch / r.Packaged), 4:F2}x"
                                : $"{"(batch 1 only)", 18} |"
                        )
                );
            }
        }

        Console.WriteLine();
        Console.WriteLine(
            "Every registrable architecture (random weights, TorchSharp, folded and channels-last), images/s"
        );
        Console.WriteLine(
            "architecture | input | parameters | threads 1 batch 1 | threads 1 batch 32 | threads 2 batch 1 | threads "
                + "2 batch 32"
        );
        foreach (var architecture in BackboneArchitecture.Registrable)
        {
            using var network = WeightsImport.Load(architecture, RandomWeights.StateDict(architecture));
            using var registered = new Backbone(
                architecture.Name,
                network,
                new ImagePreprocessor(architecture.DefaultPreprocessing, new ImageLimits())
            );
            using var pixels = registered.Preprocessor.ToTensor(images);
            var rates = new List<double>();
            foreach (var threads in new[] { 1, 2 })
            {
                TorchRuntime.SetThreads(threads);
                foreach (var size in new[] { 1, 32 })
                    rates.Add(TorchSharpRate(registered, pixels, size, repeats));
            }
            Console.WriteLine(
                $"{architecture.Name, 12} | {architecture.DefaultPreprocessing.InputSize, 5} | "
                    + $"{registered.ParameterCount / 1e6, 8:F1} M | "
                    + string.Join(" | ", rates.Select(r => $"{r, 17:F1}"))
            );
        }

        TorchRuntime.SetThreads(Environment.ProcessorCount);
        var observer = new NullObserver();
        var result = new TransferLearningTrainer(backbone).Train(
            trainImages,
            new TrainingOptions { Epochs = 10 },
            observer,
            CancellationToken.None
        );
        Console.WriteLine();
        Console.WriteLine(
            $"10-epoch job on ants-bees train/ ({trainImages.Count} images): feature extraction "
                + $"{result.Timings.FeatureExtraction.TotalSeconds:F2} s "
                + $"({result.Timings.ImagesPerSecond:F1} images/s incl. decode), head training "
                + $"{result.Timings.HeadTraining.TotalSeconds:F3} s, "
                + $"val accuracy {result.Metrics[^1].ValAccuracy:P1}"
        );
        Console.WriteLine($"peak working set {Process.GetCurrentProcess().PeakWorkingSet64 / 1024.0 / 1024:F0} MiB");
    }

    private static double Median(int repeats, Func<double> measure) =>
        Enumerable.Range(0, repeats).Select(_ => measure()).Order().ElementAt(repeats / 2);

    /// <summary>Images/s of Backbone.Forward over the 32 images of <paramref name="pixels"/>, <paramref name="size"/>
    /// at a time.</summary>
    private static double TorchSharpRate(Backbone backbone, TorchSharp.torch.Tensor pixels, int size, int repeats)
    {
        var batches = Enumerable
            .Range(0, 32 / size)
            .Select(i => pixels.narrow(0, i * size, size).contiguous())
            .ToList();
        using (backbone.Forward(batches[0])) { }
        var rate = Median(repeats, () =>
        {
            var clock = Stopwatch.StartNew();
            foreach (var b in batches)
            {
                using var features = backbone.Forward(b);
            }
            return 32 / clock.Elapsed.TotalSeconds;
        });
        batches.ForEach(b => b.Dispose());
        return rate;
    }

    private static InferenceSession Session(object model, int threads)
    {
        using var options = new SessionOptions
        {
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        return model is string path
            ? new InferenceSession(path, options)
            : new InferenceSession((byte[])model, options);
    }

    /// <summary>Images/s of an ONNX Runtime session over 32 images of <paramref name="planar"/>, <paramref
    /// name="size"/> at a time.</summary>
    private static double OnnxRate(InferenceSession session, float[] planar, int size, int repeats)
    {
        var input = session.InputMetadata.Keys.Single();
        var perImage = planar.Length / 32;
        var batches = Enumerable
            .Range(0, 32 / size)
            .Select(i => new DenseTensor<float>(
                planar.AsMemory(i * size * perImage, size * perImage),
                [size, 3, 224, 224]
            ))
            .ToList();
        void RunAll()
        {
            foreach (var b in batches)
            {
                using var result = session.Run([NamedOnnxValue.CreateFromTensor(input, b)]);
            }
        }
        RunAll();
        return Median(repeats, () =>
        {
            var clock = Stopwatch.StartNew();
            RunAll();
            return 32 / clock.Elapsed.TotalSeconds;
        });
    }

    /// <summary>The backbone as TransferApi exports it to ONNX (with a throw-away 2-class head): any batch
    /// size.</summary>
    private static byte[] ExportedOnnx(Backbone backbone)
    {
        using var head = ClassifierHead.Create(HeadSpec.Linear, backbone.FeatureSize, 2, seed: 1);
        var checkpoint = ModelCheckpoint.FromHead(
            backbone.Id,
            backbone.Preprocessor.Spec,
            ["a", "b"],
            backbone.FeatureSize,
            HeadSpec.Linear,
            head
        );
        return ModelExport.Write(backbone, checkpoint, ExportFormat.Onnx).Bytes;
    }
}

/// <summary>An observer for runs nobody watches (every benchmark uses this one).</summary>
internal sealed class NullObserver : ITrainingObserver
{
    public void OnProgress(TrainingProgress progress) { }

    public void OnEpochCompleted(EpochMetrics metrics) { }

    public void OnFeaturesComputed(IReadOnlyList<ComputedFeatures> features) { }

    public void OnCheckpoint(TrainingCheckpoint checkpoint) { }
}
