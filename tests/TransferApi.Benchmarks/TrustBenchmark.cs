using System.Diagnostics;
using TransferApi.TestSupport;
using TransferApi.Training;
using TransferApi.Training.Backbones;
using TransferApi.Training.Checkpoints;
using TransferApi.Training.Evaluation;
using TransferApi.Training.Inference;
using static TorchSharp.torch;

namespace TransferApi.Benchmarks;

/// <summary>
/// Issue 14's numbers: for an ants-bees model and a cats-dogs model (../shared/datasets/pets), the share of the
/// other data set's photos flagged unknown and of the model's own validation photos flagged, by novelty scorer
/// (k nearest neighbours at several k, class-conditional Mahalanobis); calibration error before and after
/// temperature scaling; and the time calibration and novelty add to a job and to one prediction.
/// </summary>
internal static class TrustBenchmark
{
    private sealed record Set(string Name, List<LabeledImage> Images, float[][] Features);

    public static void Run()
    {
        TorchRuntime.SetThreads(Environment.ProcessorCount);
        using var backbone = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);
        var trainer = new TransferLearningTrainer(backbone);
        var antsBees = Load(trainer, "ants-bees", TrainingBenchmark.AntsBees());
        var pets = Load(trainer, "cats-dogs", Pets());
        foreach (var (model, outside) in new[] { (antsBees, pets), (pets, antsBees) })
        {
            Measure(trainer, model, outside);
            Job(backbone, trainer, model);
        }
        // Near out-of-distribution: a model of ants and cats asked about bees and dogs.
        bool Near(LabeledImage i) => i.Label is "ants" or "cats";
        var all = new Set("ants-cats", [.. antsBees.Images, .. pets.Images], [.. antsBees.Features, .. pets.Features]);
        var nearModel = Subset(all, "ants-cats", Near);
        var nearOutside = Subset(all, "bees-dogs", i => !Near(i));
        Measure(trainer, nearModel, nearOutside);
    }

    /// <summary>Cats and dogs, every third photo of each class held out for validation.</summary>
    private static List<LabeledImage> Pets() =>
        (
            from label in new[] { "cats", "dogs" }
            from pair in Directory
                .EnumerateFiles(Path.Combine(TestData.DatasetsRoot, "pets", label))
                .Order(StringComparer.Ordinal)
                .Select((path, i) => (path, i))
            select new LabeledImage(
                label,
                pair.i % 3 == 2 ? DataSplit.Validation : DataSplit.Train,
                File.ReadAllBytes(pair.path),
                pair.path
            )
        ).ToList();

    private static Set Load(TransferLearningTrainer trainer, string name, List<LabeledImage> images)
    {
        using var features = trainer.ExtractFeatures(
            images.Select(i => i.Bytes).ToList(),
            new TrainingOptions(),
            new NullObserver(),
            CancellationToken.None
        );
        var size = (int)features.shape[1];
        var flat = features.data<float>().ToArray();
        var rows = Enumerable.Range(0, images.Count).Select(i => flat.AsSpan(i * size, size).ToArray()).ToArray();
        return new Set(name, images.Select((image, i) => image with { Features = rows[i] }).ToList(), rows);
    }

    private static void Measure(TransferLearningTrainer trainer, Set model, Set outside)
    {
        var train = Enumerable.Range(0, model.Images.Count).Where(i => model.Images[i].Split == DataSplit.Train);
        var val = Enumerable.Range(0, model.Images.Count).Where(i => model.Images[i].Split == DataSplit.Validation);
        using var trainX = Stack(train.Select(i => model.Features[i]));
        using var valX = Stack(val.Select(i => model.Features[i]));
        using var outX = Stack(outside.Features);
        Console.WriteLine(
            $"{model.Name} model ({trainX.shape[0]} training, {valX.shape[0]} validation photos) asked about "
                + $"{outX.shape[0]} {outside.Name} photos:"
        );
        foreach (var k in new[] { 1, 5, 10, 20 })
        {
            var novelty = NoveltyModel.Fit(trainX, valX, seed: 42, k);
            using var bank = novelty.BankTensor();
            var clock = Stopwatch.StartNew();
            var outScores = novelty.Score(bank, outX);
            var perImage = clock.Elapsed.TotalMilliseconds / outScores.Length;
            var valScores = novelty.Score(bank, valX);
            Report($"kNN k={k, -2}", novelty.Threshold(0.95), valScores, outScores, $", {perImage:F3} ms/image");
        }
        var leaveOneOut = NoveltyModel.Fit(trainX, null, seed: 42);
        using (var looBank = leaveOneOut.BankTensor())
            Report(
                $"kNN k={leaveOneOut.K} leave-one-out",
                leaveOneOut.Threshold(0.95),
                leaveOneOut.Score(looBank, valX),
                leaveOneOut.Score(looBank, outX),
                " (threshold from training images, validation unseen)"
            );
        foreach (var shrinkage in new[] { 0.01, 0.1, 0.5 })
        {
            var labels = train.Select(i => model.Images[i].Label).ToList();
            var (valScores, outScores) = Mahalanobis(trainX, labels, valX, outX, shrinkage);
            var sorted = valScores.Order().ToArray();
            Report(
                $"Mahalanobis shrinkage {shrinkage}",
                sorted[(int)Math.Ceiling(0.95 * sorted.Length) - 1],
                valScores,
                outScores,
                " (threshold on its own validation scores)"
            );
        }
        Console.WriteLine();
    }

    /// <summary>
    /// What the assessment costs a job from pixels and a prediction, and what calibration does: in sample (the
    /// model's own numbers) and on held-out halves of validation (fit on one, measured on the other).
    /// </summary>
    private static void Job(Backbone backbone, TransferLearningTrainer trainer, Set model)
    {
        var pixels = model.Images.Select(i => i with { Features = null }).ToList();
        var clock = Stopwatch.StartNew();
        var result = trainer.Train(pixels, new TrainingOptions(), new NullObserver(), CancellationToken.None);
        var total = clock.Elapsed;
        var assessment = result.Timings.Assessment;
        Console.WriteLine(
            $"  default job from pixels: {total.TotalSeconds:F1} s; calibration, novelty, thresholds and report "
                + $"{assessment.TotalMilliseconds:F0} ms = {assessment / total:P2} of it"
        );
        foreach (
            var (name, options) in new (string, TrainingOptions)[]
            {
                ("defaults (10 epochs, Adam 1e-3)", new TrainingOptions()),
                ("overconfident (300 epochs, Adam 1e-2)", new TrainingOptions { Epochs = 300, LearningRate = 0.01 }),
            }
        )
        {
            var trained = trainer.Train(model.Images, options, new NullObserver(), CancellationToken.None);
            var calibration = trained.Calibration!;
            var (before, after) = HeldOutCalibration(trained.Checkpoint, model);
            var (inBefore, inAfter) = (
                calibration.ExpectedCalibrationErrorBefore,
                calibration.ExpectedCalibrationErrorAfter
            );
            Console.WriteLine(
                $"  {name}: temperature {calibration.Temperature:F2}; ECE on validation {inBefore:F3} -> "
                    + $"{inAfter:F3}; fitted on half, measured on the other half {before:F3} -> {after:F3}"
            );
        }
        // Without validation images: out-of-fold calibration on the training features.
        var trainOnly = model.Images.Where(i => i.Split == DataSplit.Train).Select(i => i with { Split = default });
        clock.Restart();
        var crossValidated = trainer.Train(
            trainOnly.ToList(),
            new TrainingOptions { ValidationFraction = 0.1 },
            new NullObserver(),
            CancellationToken.None
        );
        Console.WriteLine(
            $"  {crossValidated.ValidationImages} validation images (cached features): calibration by "
                + $"{crossValidated.Calibration!.Method}, temperature {crossValidated.Calibration.Temperature:F2}, "
                + $"assessment {crossValidated.Timings.Assessment.TotalMilliseconds:F0} ms of "
                + $"{clock.Elapsed.TotalMilliseconds:F0} ms"
        );
        PredictionCost(backbone, result.Checkpoint, model.Images[0].Bytes);
    }

    /// <summary>ECE before and after a temperature fitted on the even validation images, on the odd ones.</summary>
    private static (double Before, double After) HeldOutCalibration(ModelCheckpoint checkpoint, Set model)
    {
        var val = Enumerable
            .Range(0, model.Images.Count)
            .Where(i => model.Images[i].Split == DataSplit.Validation)
            .ToList();
        using var head = checkpoint.LoadHead();
        using var features = Stack(val.Select(i => model.Features[i]));
        using var mode = inference_mode();
        using var logits = head.call(features);
        var classes = checkpoint.Labels.Count;
        var flat = logits.data<float>().ToArray();
        var rows = val.Select((_, n) => flat.AsSpan(n * classes, classes).ToArray()).ToList();
        var truth = val.Select(i => checkpoint.Labels.ToList().IndexOf(model.Images[i].Label)).ToList();
        var fit = TemperatureScaling.Fit(
            rows.Where((_, n) => n % 2 == 0).ToList(),
            truth.Where((_, n) => n % 2 == 0).ToList(),
            "half"
        );
        var (testRows, testTruth) = (
            rows.Where((_, n) => n % 2 == 1).ToList(),
            truth.Where((_, n) => n % 2 == 1).ToList()
        );
        return (
            TemperatureScaling.ExpectedCalibrationError(
                testRows.Select(r => TemperatureScaling.Softmax(r, 1)).ToList(),
                testTruth
            ),
            TemperatureScaling.ExpectedCalibrationError(
                testRows.Select(r => TemperatureScaling.Softmax(r, fit.Temperature)).ToList(),
                testTruth
            )
        );
    }

    /// <summary>One image through /predict's classifier with and without the novelty model and temperature.</summary>
    private static void PredictionCost(Backbone backbone, ModelCheckpoint checkpoint, byte[] image)
    {
        double Milliseconds(ModelCheckpoint model)
        {
            using var classifier = new ImageClassifier(backbone, model);
            var decoded = classifier.Decode([image]);
            for (var i = 0; i < 5; i++)
                classifier.Score(decoded, 1);
            var clock = Stopwatch.StartNew();
            const int repeats = 40;
            for (var i = 0; i < repeats; i++)
                classifier.Score(decoded, 1);
            return clock.Elapsed.TotalMilliseconds / repeats;
        }
        var plain = Milliseconds(checkpoint with { Novelty = null, Temperature = 1 });
        var trusted = Milliseconds(checkpoint);
        var novelty = checkpoint.Novelty!;
        using var bank = novelty.BankTensor();
        using var one = tensor(novelty.Bank.Take(novelty.Dimension).ToArray(), [1, novelty.Dimension]);
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < 1000; i++)
            novelty.Score(bank, one);
        Console.WriteLine(
            $"  one prediction: {plain:F2} ms without novelty and temperature, {trusted:F2} ms with; novelty "
                + $"scoring alone {clock.Elapsed.TotalMilliseconds / 1000:F3} ms against {novelty.BankRows} training "
                + "images"
        );
    }

    private static void Report(string name, double threshold, double[] valScores, double[] outScores, string extra)
    {
        var auroc = outScores.Average(o =>
            valScores.Average(v =>
                o > v ? 1
                : o == v ? 0.5
                : 0
            )
        );
        var flaggedOutside = outScores.Count(s => s > threshold) / (double)outScores.Length;
        var flaggedInside = valScores.Count(s => s > threshold) / (double)valScores.Length;
        Console.WriteLine(
            $"  {name, -28} out-of-distribution flagged {flaggedOutside:P1}, validation flagged {flaggedInside:P1}, "
                + $"AUROC {auroc:F3}{extra}"
        );
    }

    /// <summary>Class-conditional Gaussian with a shared, shrunk covariance (Lee et al. 2018), on unit-length
    /// features: the smallest distance to a class mean.</summary>
    private static (double[] Val, double[] Out) Mahalanobis(
        Tensor trainX,
        IReadOnlyList<string> labels,
        Tensor valX,
        Tensor outX,
        double shrinkage
    )
    {
        using var scope = NewDisposeScope();
        var x = nn.functional.normalize(trainX, p: 2, dim: 1).to_type(ScalarType.Float64);
        var classes = labels.Distinct().ToList();
        var means = classes
            .Select(c =>
                x.index_select(
                        0,
                        tensor(labels.Select((l, i) => (l, i)).Where(p => p.l == c).Select(p => (long)p.i).ToArray())
                    )
                    .mean([0])
            )
            .ToList();
        var centred = x - stack(labels.Select(l => means[classes.IndexOf(l)]).ToList());
        var covariance = centred.t().matmul(centred) / x.shape[0];
        var size = covariance.shape[0];
        var shrunk =
            (1 - shrinkage) * covariance + shrinkage * covariance.trace() / size * eye(size, dtype: ScalarType.Float64);
        var precision = linalg.inv(shrunk);
        double[] Score(Tensor queries)
        {
            var q = nn.functional.normalize(queries, p: 2, dim: 1).to_type(ScalarType.Float64);
            var distances = stack(means.Select(m => ((q - m).matmul(precision) * (q - m)).sum(1)).ToList(), 1);
            return distances.min(1).values.data<double>().ToArray();
        }
        return (Score(valX), Score(outX));
    }

    private static Set Subset(Set set, string name, Func<LabeledImage, bool> keep)
    {
        var indices = Enumerable.Range(0, set.Images.Count).Where(i => keep(set.Images[i])).ToList();
        return new Set(
            name,
            indices.Select(i => set.Images[i]).ToList(),
            indices.Select(i => set.Features[i]).ToArray()
        );
    }

    private static Tensor Stack(IEnumerable<float[]> rows)
    {
        var list = rows.ToList();
        return tensor(list.SelectMany(r => r).ToArray(), [list.Count, list[0].Length]);
    }
}
