using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using Npgsql;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using TransferApi.Features.Datasets;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;
using TransferApi.TestSupport;
using TransferApi.Training;
using TransferApi.Training.Backbones;
using TransferApi.Training.Imaging;

namespace TransferApi.Benchmarks;

/// <summary>
/// Issue 17's end-to-end speed, in one run: the backbone alone against a real job's feature pass through the
/// service (alternating rounds), where the pass spends its time, decode speed per core for the shared photos and for
/// 12-megapixel JPEGs, and /predict latency for phone photos and while a job trains in the same process.
/// </summary>
internal static class SpeedBenchmark
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        Converters = { new JsonStringEnumConverter() },
    };

    public static async Task RunAsync(int rounds)
    {
        var cores = Environment.ProcessorCount;
        TorchRuntime.SetThreads(cores);
        using var backbone = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);
        var precision = backbone.UsePrecision(BackbonePrecision.Auto);
        var labelled = new[] { "ants", "bees" }
            .SelectMany(label => TestData.AntsBeesImages("train", label).Select(path => (label, path)))
            .Select((p, i) => ($"{p.label}/{i}.jpg", File.ReadAllBytes(p.path)))
            .ToList();
        var shared = labelled.Select(p => p.Item2).ToList();
        var phone = new[] { "ants", "bees" }
            .SelectMany(label => TestData.AntsBeesImages("val", label, 4))
            .Select(path => PhonePhotos.Make(File.ReadAllBytes(path)))
            .ToList();
        var limits = new ImageLimits();
        // The working copies uploads now store for large photos (WorkingCopy: upright JPEG, shorter side 512), and
        // a lossless one for comparison.
        var phoneCopyJpeg = phone.Select(p => ImageReader.Validate(p, limits).WorkingCopy!).ToList();
        var phoneCopyPng = phone.Select(p => PngCopy(p, limits)).ToList();
        var sample = shared.Take(64).ToList();
        var batches = sample.Chunk(32).Select(b => backbone.Preprocessor.ToTensor(b)).ToList();

        Console.WriteLine(
            $"Speed end to end ({cores} cores, libtorch {cores} threads, batch 32, backbone in {precision.Chosen} "
                + $"as Backbones:Precision=Auto chose; medians of {rounds} "
                + "alternating rounds)"
        );
        var trainer = new TransferLearningTrainer(backbone);
        var stages = Enumerable
            .Range(0, rounds)
            .Select(_ => new
            {
                Backbone = BackboneRate(backbone, batches),
                InProcessPass = Rate([shared], images =>
                {
                    using var features = trainer.ExtractFeatures(
                        images,
                        new TrainingOptions(),
                        new NullObserver(),
                        default
                    );
                }) * shared.Count,
                SharedDecodeOnly = Rate(sample, image => ImageReader.Decode(image, limits, 224).Dispose()),
                SharedPreprocess = Rate(sample, image => backbone.Preprocessor.DecodePlanar([image], maxThreads: 1)),
                PhoneHeader = Rate(phone, image => ImageReader.ReadHeader(image, limits)),
                PhoneFullDecode = Rate(phone, image => ImageReader.Decode(image, limits).Dispose()),
                PhoneReducedDecode = Rate(phone, image => ImageReader.Decode(image, limits, 224).Dispose()),
                PhonePreprocess = Rate(phone, image => backbone.Preprocessor.DecodePlanar([image], maxThreads: 1)),
                ValidateOnly = Rate(phone, image => ImageReader.Decode(image, limits).Dispose()),
                ValidateAndCopy = Rate(phone, image => ImageReader.Validate(image, limits)),
                CopyJpegPreprocess = Rate(phoneCopyJpeg, image =>
                    backbone.Preprocessor.DecodePlanar([image], maxThreads: 1)
                ),
                CopyPngPreprocess = Rate(phoneCopyPng, image =>
                    backbone.Preprocessor.DecodePlanar([image], maxThreads: 1)
                ),
                Copy = Rate(Enumerable.Range(0, 64).ToList(), _ =>
                {
                    using var t = backbone.Preprocessor.FromPlanar(new float[3 * 224 * 224], 1);
                }),
            })
            .ToList();
        var backboneRate = Mid(stages, s => s.Backbone);
        Console.WriteLine($"backbone alone (forward of decoded batches):       {backboneRate, 7:F1} images/s");
        Console.WriteLine(
            $"a job's feature pass in process (decode overlapped): {Mid(stages, s => s.InProcessPass), 7:F1} images/s "
                + $"= {Mid(stages, s => s.InProcessPass / s.Backbone):F2}x the backbone alone "
                + $"({shared.Count} shared photos)"
        );
        Console.WriteLine("per core (1 thread), images/s:                     shared photos | 12 MP JPEG");
        Console.WriteLine(
            "  header and limits only                                         | "
                + $"{Mid(stages, s => s.PhoneHeader), 10:F1}"
        );
        Console.WriteLine(
            $"  decode (JPEG, reduced when large)                {Mid(stages, s => s.SharedDecodeOnly), 13:F1} | "
                + $"{Mid(stages, s => s.PhoneReducedDecode), 10:F1}"
        );
        Console.WriteLine(
            "  decode, full size (ImageSharp; before this issue)                 | "
                + $"{Mid(stages, s => s.PhoneFullDecode), 10:F1}"
        );
        Console.WriteLine(
            $"  decode + resize + crop + normalize (the job's)   {Mid(stages, s => s.SharedPreprocess), 13:F1} | "
                + $"{Mid(stages, s => s.PhonePreprocess), 10:F1}"
        );
        Console.WriteLine(
            "  the same from the working copy (shorter side 512, JPEG q90)       | "
                + $"{Mid(stages, s => s.CopyJpegPreprocess), 10:F1}"
        );
        Console.WriteLine(
            "    from a lossless PNG copy instead                                 | "
                + $"{Mid(stages, s => s.CopyPngPreprocess), 10:F1}"
        );
        Console.WriteLine(
            "  upload's validating decode: alone, and making the working copy too | "
                + $"{Mid(stages, s => s.ValidateOnly), 10:F1} / {Mid(stages, s => s.ValidateAndCopy):F1}"
        );
        Console.WriteLine(
            $"    size: JPEG {phoneCopyJpeg.Average(c => c.Length) / 1e3:F0} kB, PNG "
                + $"{phoneCopyPng.Average(c => c.Length) / 1e3:F0} kB beside the "
                + $"{phone.Average(c => c.Length) / 1e3:F0} kB original"
        );
        Console.WriteLine($"  planar pixels to a tensor                        {Mid(stages, s => s.Copy), 13:F0} |");
        Console.WriteLine(
            $"  forward pass, per core ({cores} threads / {cores})        {backboneRate / cores, 13:F1} |"
        );

        Precision(batches, rounds);
        DecoderAgreement(backbone, phone, limits);

        if (Environment.GetEnvironmentVariable("TRANSFERAPI_TEST_POSTGRES") is not { Length: > 0 } admin)
        {
            Console.WriteLine("service part skipped (TRANSFERAPI_TEST_POSTGRES is not set; run scripts/benchmark.sh)");
            return;
        }
        Dictionary<string, string> Settings(int jobNice) =>
            new()
            {
                ["Worker__QueuePollInterval"] = "00:00:00.2",
                // The production default: the same choice as the in-process backbone above.
                ["Backbones__Precision"] = "Auto",
                ["Worker__JobNice"] = jobNice.ToString(CultureInfo.InvariantCulture),
            };
        var service = await ServiceProcess.StartAsync(admin, Settings(19));
        try
        {
            await ServiceAsync(service, labelled, backbone, batches, phone, sample, rounds);
            // The same predictions during the same jobs with job threads at the predictions' priority.
            await service.DisposeAsync(keepDatabase: true);
            service = await ServiceProcess.StartAsync(admin, Settings(0), service.Database);
            Console.WriteLine("with Worker:JobNice=0 (jobs at the predictions' priority):");
            await PredictDuringJobsAsync(service, sample.Take(16).ToList());
        }
        finally
        {
            await service.DisposeAsync();
        }
        batches.ForEach(b => b.Dispose());
    }

    private static async Task ServiceAsync(
        ServiceProcess service,
        List<(string, byte[])> labelled,
        Backbone backbone,
        List<TorchSharp.torch.Tensor> batches,
        List<byte[]> phone,
        List<byte[]> sample,
        int rounds
    )
    {
        var client = service.Client;
        var dataset = await UploadAsync(client, "speed", labelled);
        // The upload's health pass runs the backbone over every image: let it finish, then warm the job path once.
        await HealthReadyAsync(client, dataset);
        await FeaturePassAsync(service, dataset);

        // A real job's feature pass against the backbone alone, round by round; the feature cache is emptied before
        // each job so every image goes through the network.
        // The same pass in this process too: what the service adds, apart from what decoding costs everywhere.
        var passes = new List<(double Backbone, double Service, double InProcess)>();
        var trainer = new TransferLearningTrainer(backbone);
        var images = labelled.Select(l => l.Item2).ToList();
        Guid? modelId = null;
        for (var round = 0; round < rounds; round++)
        {
            var alone = BackboneRate(backbone, batches);
            await ClearFeatureCacheAsync(service);
            var (job, rate) = await FeaturePassAsync(service, dataset);
            modelId ??= job.ModelId;
            var clock = Stopwatch.StartNew();
            using (trainer.ExtractFeatures(images, new TrainingOptions(), new NullObserver(), default)) { }
            passes.Add((alone, rate, images.Count / clock.Elapsed.TotalSeconds));
        }
        Console.WriteLine();
        Console.WriteLine($"job feature pass through the service ({labelled.Count} shared photos, tuning off):");
        Console.WriteLine("  round | backbone alone | service job | ratio | the same pass in process | service / it");
        foreach (var (p, i) in passes.Select((p, i) => (p, i)))
            Console.WriteLine(
                $"  {i + 1, 5} | {p.Backbone, 14:F1} | {p.Service, 11:F1} | {p.Service / p.Backbone, 4:F2}x | "
                    + $"{p.InProcess, 24:F1} | {p.Service / p.InProcess, 4:F2}x"
            );
        Console.WriteLine(
            $"  median ratio {Mid(passes, p => p.Service / p.Backbone):F2}x (goal >= 0.85x); the service's pass "
                + $"against the same pass in process: {Mid(passes, p => p.Service / p.InProcess):F2}x"
        );

        // /predict of a 12 MP phone photo against a 256-pixel JPEG of the same scene, alternating.
        var route = $"/api/models/{modelId}/predict";
        var small = phone.Select(p => Resized(p, 256)).ToList();
        var (smallTimes, phoneTimes, rawTimes) = (new List<double>(), new List<double>(), new List<double>());
        await LatencyAsync(client, route, small, 5);
        for (var round = 0; round < rounds; round++)
        {
            smallTimes.AddRange(await LatencyAsync(client, route, small, 16));
            phoneTimes.AddRange(await LatencyAsync(client, route, phone, 16));
            rawTimes.AddRange(await LatencyAsync(client, route, phone, 16, raw: true));
        }
        Console.WriteLine();
        Console.WriteLine(
            $"/predict p50: 256-pixel JPEG {P50(smallTimes):F1} ms, 12 MP JPEG {P50(phoneTimes):F1} ms = "
                + $"{P50(phoneTimes) / P50(smallTimes):F2}x (goal <= 1.3x); the 12 MP JPEG as an image/jpeg body "
                + $"{P50(rawTimes):F1} ms = {P50(rawTimes) / P50(smallTimes):F2}x"
        );

        Console.WriteLine("with Worker:JobNice=19 (the default):");
        await PredictDuringJobsAsync(service, sample.Take(16).ToList());
    }

    /// <summary>/predict while a job trains in the same process, against idle just before: a frozen job's feature
    /// pass, then fine-tuning.</summary>
    private static async Task PredictDuringJobsAsync(ServiceProcess service, List<byte[]> images)
    {
        var client = service.Client;
        var models = await client.GetFromJsonAsync<JsonElement>("/api/models", Json);
        // The service chose its precision when it loaded the backbone: say which, since it moves every latency.
        Console.WriteLine(
            "  "
                + (
                    service.Output.FirstOrDefault(l => l.Contains("it runs in", StringComparison.Ordinal))
                    ?? "(the service logged no precision choice)"
                ).Trim()
        );
        var model = models.GetProperty("items")[0];
        var route = $"/api/models/{model.GetProperty("id").GetGuid()}/predict";
        var dataset = model.GetProperty("datasetId").GetGuid();
        await LatencyAsync(client, route, images, 5);
        foreach (
            var (name, request) in new (string, object)[]
            {
                (
                    "frozen job's feature pass",
                    new
                    {
                        datasetId = dataset,
                        tuning = new { mode = "Off" },
                        epochs = 1,
                    }
                ),
                (
                    "fine-tuning job",
                    new
                    {
                        datasetId = dataset,
                        unfreezeStages = 1,
                        epochs = 1,
                        fineTuneEpochs = 3,
                    }
                ),
            }
        )
        {
            var idle = await LatencyAsync(client, route, images, 32);
            await ClearFeatureCacheAsync(service);
            var during = await LatencyDuringJobAsync(client, route, images, request);
            Console.WriteLine(
                $"  /predict p50 during a {name}: {P50(during.Latencies):F1} ms against {P50(idle):F1} ms "
                    + $"idle = {P50(during.Latencies) / P50(idle):F2}x over {during.Latencies.Count} requests "
                    + $"(goal <= 1.5x); the job took {during.JobSeconds:F1} s"
            );
        }
    }

    /// <summary>Features of phone photos as the service decodes them (reduced) against the same photos decoded whole
    /// by ImageSharp (handed over as PNG, which is never reduced).</summary>
    private static void DecoderAgreement(Backbone backbone, List<byte[]> jpegs, ImageLimits limits)
    {
        var pngs = jpegs
            .Select(jpeg =>
            {
                using var image = ImageReader.Decode(jpeg, limits);
                using var buffer = new MemoryStream();
                image.SaveAsPng(buffer);
                return buffer.ToArray();
            })
            .ToList();
        using var served = backbone.ExtractFeatures(jpegs);
        using var imageSharp = backbone.ExtractFeatures(pngs);
        using var cosine = TorchSharp.torch.nn.functional.cosine_similarity(served, imageSharp, 1);
        var values = cosine.data<float>().ToArray();
        Console.WriteLine(
            $"12 MP JPEGs decoded reduced against whole, features of {jpegs.Count} photos: cosine min "
                + $"{values.Min():F5}, mean {values.Average():F5}"
        );
        // What training sees (the working copy) against what /predict sees (the photo, decoded reduced).
        var copies = jpegs.Select(j => ImageReader.Validate(j, limits).WorkingCopy!).ToList();
        using var fromCopies = backbone.ExtractFeatures(copies);
        using var copyCosine = TorchSharp.torch.nn.functional.cosine_similarity(fromCopies, served, 1);
        var copyValues = copyCosine.data<float>().ToArray();
        Console.WriteLine(
            $"working copies against the 12 MP JPEGs decoded reduced, features: cosine min {copyValues.Min():F5}, "
                + $"mean {copyValues.Average():F5}"
        );
    }

    /// <summary>bfloat16 against float32 on the shared photos (alternating), and what Auto chooses here.</summary>
    private static void Precision(List<TorchSharp.torch.Tensor> batches, int rounds)
    {
        using var fp32 = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);
        using var bf16 = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);
        bf16.UsePrecision(BackbonePrecision.Bf16);
        var rates = Enumerable
            .Range(0, rounds)
            .Select(_ => (Fp32: BackboneRate(fp32, batches), Bf16: BackboneRate(bf16, batches)))
            .ToList();
        var cosines = batches
            .SelectMany(b =>
            {
                using var a = fp32.Forward(b);
                using var c = bf16.Forward(b);
                using var cosine = TorchSharp.torch.nn.functional.cosine_similarity(a, c, 1);
                return cosine.data<float>().ToArray();
            })
            .ToList();
        using var auto = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);
        var clock = Stopwatch.StartNew();
        var choice = auto.UsePrecision(BackbonePrecision.Auto);
        Console.WriteLine(
            $"bfloat16 backbone: {rates.Select(r => r.Bf16).Order().ElementAt(rounds / 2):F1} images/s against "
                + $"float32 {rates.Select(r => r.Fp32).Order().ElementAt(rounds / 2):F1} = "
                + $"{rates.Select(r => r.Bf16 / r.Fp32).Order().ElementAt(rounds / 2):F2}x; feature cosine on the "
                + $"shared photos min {cosines.Min():F4}, mean {cosines.Average():F4}; processor bfloat16 "
                + $"instructions: {PrecisionChoice.ProcessorHasBf16()}"
        );
        Console.WriteLine(
            $"Backbones:Precision=Auto chose {choice.Chosen} in {clock.Elapsed.TotalSeconds:F1} s: "
                + $"{choice.Reason} (probe batch: float32 {choice.Fp32ImagesPerSecond:F1}, bfloat16 "
                + $"{choice.Bf16ImagesPerSecond:F1} images/s, cosine {choice.Cosine:F4})"
        );
    }

    private static double BackboneRate(Backbone backbone, List<TorchSharp.torch.Tensor> batches)
    {
        using (backbone.Forward(batches[0])) { }
        var clock = Stopwatch.StartNew();
        foreach (var b in batches)
        {
            using var features = backbone.Forward(b);
        }
        return batches.Sum(b => b.shape[0]) / clock.Elapsed.TotalSeconds;
    }

    private static double Rate<T>(IReadOnlyList<T> items, Action<T> work)
    {
        work(items[0]);
        var clock = Stopwatch.StartNew();
        foreach (var item in items)
            work(item);
        return items.Count / clock.Elapsed.TotalSeconds;
    }

    /// <summary>A lossless working copy of the same size as <see cref="WorkingCopy"/>'s, for comparison.</summary>
    private static byte[] PngCopy(byte[] photo, ImageLimits limits)
    {
        using var copy = Image.Load<Rgb24>(ImageReader.Validate(photo, limits).WorkingCopy!);
        using var whole = ImageReader.Decode(photo, limits);
        whole.Mutate(x => x.Resize(copy.Width, copy.Height, KnownResamplers.Bicubic));
        using var buffer = new MemoryStream();
        whole.SaveAsPng(buffer);
        return buffer.ToArray();
    }

    private static byte[] Resized(byte[] jpeg, int longerSide)
    {
        using var image = Image.Load<Rgb24>(jpeg);
        image.Mutate(x =>
            x.Resize(new ResizeOptions { Size = new Size(longerSide, longerSide), Mode = ResizeMode.Max })
        );
        using var buffer = new MemoryStream();
        image.SaveAsJpeg(buffer);
        return buffer.ToArray();
    }

    private static async Task<Guid> UploadAsync(HttpClient client, string name, IEnumerable<(string, byte[])> entries)
    {
        var response = await client.PostAsync("/api/datasets", Archives.DatasetForm(name, Archives.Zip(entries)));
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<DatasetResponse>(Json))!.Id;
    }

    private static async Task HealthReadyAsync(HttpClient client, Guid dataset)
    {
        while (
            (await client.GetFromJsonAsync<JsonElement>($"/api/datasets/{dataset}/health", Json))
                .GetProperty("status")
                .GetString()
                is not ("Ready" or "Failed")
        )
            await Task.Delay(200);
    }

    private static async Task ClearFeatureCacheAsync(ServiceProcess service)
    {
        await using var connection = new NpgsqlConnection(service.ConnectionString);
        await connection.OpenAsync();
        // Vacuumed now, so that autovacuum does not wake up during the next measurement.
        foreach (var sql in new[] { "DELETE FROM image_features", "VACUUM image_features" })
        {
            await using var command = new NpgsqlCommand(sql, connection);
            await command.ExecuteNonQueryAsync();
        }
    }

    private static async Task<TrainingJobResponse> StartAsync(HttpClient client, object request)
    {
        var response = await client.PostAsJsonAsync("/api/training-jobs", request);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<TrainingJobResponse>(Json))!;
    }

    private static async Task<TrainingJobResponse> WaitAsync(HttpClient client, Guid job)
    {
        while (true)
        {
            var state = (await client.GetFromJsonAsync<TrainingJobResponse>($"/api/training-jobs/{job}", Json))!;
            if (state.Status is JobStatus.Succeeded)
                return state;
            if (state.Status is JobStatus.Failed or JobStatus.Cancelled)
                throw new InvalidOperationException($"benchmark job ended {state.Status}: {state.Error}");
            await Task.Delay(100);
        }
    }

    /// <summary>A frozen job without search; its feature pass rate as the service logs it (the trainer's own clock
    /// from the first batch read to the last batch's features).</summary>
    private static async Task<(TrainingJobResponse Job, double Rate)> FeaturePassAsync(
        ServiceProcess service,
        Guid dataset
    )
    {
        var job = await StartAsync(
            service.Client,
            new
            {
                datasetId = dataset,
                tuning = new { mode = "Off" },
                epochs = 1,
            }
        );
        var done = await WaitAsync(service.Client, job.Id);
        var pattern = new Regex($@"Training job {job.Id} succeeded.*features [\d.,]+ s \(([\d.,]+) img/s\)");
        for (var wait = 0; wait < 50; wait++)
        {
            if (service.Output.Select(l => pattern.Match(l)).FirstOrDefault(m => m.Success) is { } match)
                return (done, double.Parse(match.Groups[1].Value.Replace(",", ""), CultureInfo.InvariantCulture));
            await Task.Delay(100);
        }
        throw new InvalidOperationException($"job {job.Id} logged no feature pass rate");
    }

    private static async Task<List<double>> LatencyAsync(
        HttpClient client,
        string route,
        List<byte[]> images,
        int count,
        bool raw = false
    )
    {
        var latencies = new List<double>();
        for (var i = 0; i < count; i++)
            latencies.Add(await PredictAsync(client, route, images[i % images.Count], raw));
        return latencies;
    }

    /// <summary>Sequential predictions from the moment the job starts running until it ends.</summary>
    private static async Task<(List<double> Latencies, double JobSeconds)> LatencyDuringJobAsync(
        HttpClient client,
        string route,
        List<byte[]> images,
        object request
    )
    {
        var job = await StartAsync(client, request);
        var clock = Stopwatch.StartNew();
        while (
            (await client.GetFromJsonAsync<TrainingJobResponse>($"/api/training-jobs/{job.Id}", Json))!.Status
            is JobStatus.Queued
        )
            await Task.Delay(20);
        var ended = WaitAsync(client, job.Id);
        var latencies = new List<double>();
        for (var i = 0; !ended.IsCompleted; i++)
            latencies.Add(await PredictAsync(client, route, images[i % images.Count]));
        await ended;
        return (latencies, clock.Elapsed.TotalSeconds);
    }

    private static async Task<double> PredictAsync(HttpClient client, string route, byte[] image, bool raw = false)
    {
        var started = Stopwatch.GetTimestamp();
        using var content = raw ? new ByteArrayContent(image) : (HttpContent)Archives.ImageForm(image);
        if (raw)
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("image/jpeg");
        using var response = await client.PostAsync(route, content);
        await response.Content.ReadAsByteArrayAsync();
        response.EnsureSuccessStatusCode();
        return Stopwatch.GetElapsedTime(started).TotalMilliseconds;
    }

    /// <summary>The median of <paramref name="pick"/> over the rounds.</summary>
    private static double Mid<T>(IReadOnlyCollection<T> rounds, Func<T, double> pick) =>
        rounds.Select(pick).Order().ElementAt(rounds.Count / 2);

    private static double P50(List<double> values) => values.Order().ElementAt(values.Count / 2);
}
