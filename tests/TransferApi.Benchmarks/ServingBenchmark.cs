using System.Diagnostics;
using System.Net.Http.Json;
using Microsoft.EntityFrameworkCore;
using TransferApi.Features.Datasets;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;
using TransferApi.TestSupport;
using TransferApi.Training;
using TransferApi.Training.Backbones;
using TransferApi.Training.Inference;

namespace TransferApi.Benchmarks;

/// <summary>
/// /predict through HTTP on loopback (the real service process) against the same model's in-process
/// decode + preprocess + forward in the same run: single-request latency, throughput with 16 concurrent
/// clients, then a soak with 16 clients that counts errors and watches the service's resident memory.
/// </summary>
internal static class ServingBenchmark
{
    private const int Clients = 16;
    private static readonly System.Text.Json.JsonSerializerOptions JsonOptions = new(
        System.Text.Json.JsonSerializerDefaults.Web
    )
    {
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
    };

    public static async Task RunAsync(TimeSpan soak)
    {
        if (Environment.GetEnvironmentVariable("TRANSFERAPI_TEST_POSTGRES") is not { Length: > 0 } admin)
        {
            Console.WriteLine("serving: skipped (TRANSFERAPI_TEST_POSTGRES is not set; run scripts/benchmark.sh)");
            return;
        }
        var images = new[] { "ants", "bees" }
            .SelectMany(label => TestData.AntsBeesImages("val", label, 20))
            .Select(File.ReadAllBytes)
            .ToList();
        await using var service = await ServiceProcess.StartAsync(
            admin,
            new Dictionary<string, string> { ["Worker__QueuePollInterval"] = "00:00:00.5" }
        );
        var modelId = await TrainAsync(service.Client);
        var route = $"/api/models/{modelId}/predict";
        TrainedModel row;
        await using (
            var db = new TransferDbContext(
                new DbContextOptionsBuilder<TransferDbContext>().UseNpgsql(service.ConnectionString).Options
            )
        )
            row = await db.Models.AsNoTracking().SingleAsync(m => m.Id == modelId);

        // The same model in this process, on as many libtorch threads as the service uses. The two are measured in
        // alternating rounds while the other side idles, so both see the same machine (a shared VM drifts).
        TorchRuntime.SetThreads(Environment.ProcessorCount);
        using var backbone = BackboneCatalog.LoadBuiltIn(row.Backbone);
        using var classifier = new ImageClassifier(backbone, ModelMapping.ToCheckpoint(row));
        var (http, reported, inProcess) = (new List<double>(), new List<double>(), new List<double>());
        await SequentialAsync(service.Client, route, images, 10, reported);
        reported.Clear();
        for (var round = 0; round < 6; round++)
        {
            http.AddRange((await SequentialAsync(service.Client, route, images, 15, reported)).Latencies);
            for (var i = 0; i < 15; i++)
            {
                var started = Stopwatch.GetTimestamp();
                classifier.Classify([images[i % images.Count]], 5);
                inProcess.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
        }
        var (httpP50, inProcessP50) = (Percentile(http, 0.5), Percentile(inProcess, 0.5));
        var singleRate = 1000 / http.Average();
        Console.WriteLine(
            $"HTTP, 1 client:    p50 {httpP50:F1} ms, p95 {Percentile(http, 0.95):F1} ms, {singleRate:F1} requests/s; "
                + $"the service's own inferenceMilliseconds p50 {Percentile(reported, 0.5):F1} ms"
        );
        Console.WriteLine(
            $"in process:        p50 {inProcessP50:F1} ms (decode + preprocess + forward of one image, same images)"
        );
        Console.WriteLine($"HTTP p50 / in-process p50 = {httpP50 / inProcessP50:F2}x (target <= 1.25x)");

        var concurrent = await LoadAsync(service, route, images, TimeSpan.FromSeconds(30), sample: null);
        Console.WriteLine(
            $"HTTP, {Clients} clients:  p50 {Percentile(concurrent.Latencies, 0.5):F1} ms, {concurrent.Rate:F1} "
                + $"requests/s = {concurrent.Rate / singleRate:F2}x one client (target >= 1.5x), {concurrent.Errors} "
                + "errors"
        );

        if (soak > TimeSpan.Zero)
        {
            var rss = new List<(double Minutes, long Bytes)>();
            var run = await LoadAsync(service, route, images, soak, sample: rss);
            var firstMinute = rss.Where(s => s.Minutes <= 1).Average(s => s.Bytes) / 1e6;
            var lastMinute = rss.Where(s => s.Minutes >= soak.TotalMinutes - 1).Average(s => s.Bytes) / 1e6;
            Console.WriteLine(
                $"soak, {Clients} clients for {soak.TotalMinutes:F0} min: {run.Requests} requests, {run.Errors} "
                    + $"errors, {run.Rate:F1} requests/s; "
                    + $"service RSS first minute {firstMinute:F0} MB, last minute {lastMinute:F0} MB "
                    + $"({lastMinute / firstMinute:F2}x), peak {service.PeakResidentBytes / 1e6:F0} MB"
            );
            Console.WriteLine(
                "  RSS by minute (MB): "
                    + string.Join(
                        ", ",
                        rss.GroupBy(s => (int)s.Minutes).Select(g => $"{g.Key}: {g.Average(s => s.Bytes) / 1e6:F0}")
                    )
            );
        }
    }

    private static async Task<Guid> TrainAsync(HttpClient client)
    {
        var zip = Archives.Zip(
            new[] { "ants", "bees" }.SelectMany(label =>
                TestData
                    .AntsBeesImages("train", label, 20)
                    .Select(path => ($"{label}/{Path.GetFileName(path)}", File.ReadAllBytes(path)))
            )
        );
        var dataset = await (
            await client.PostAsync("/api/datasets", Archives.DatasetForm("serving-benchmark", zip))
        ).Content.ReadFromJsonAsync<DatasetResponse>(JsonOptions);
        var job = await (
            await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset!.Id, epochs = 5 })
        ).Content.ReadFromJsonAsync<TrainingJobResponse>(JsonOptions);
        while (true)
        {
            var state = await client.GetFromJsonAsync<TrainingJobResponse>(
                $"/api/training-jobs/{job!.Id}",
                JsonOptions
            );
            if (state!.ModelId is { } model)
                return model;
            if (state.Status is JobStatus.Failed or JobStatus.Cancelled)
                throw new InvalidOperationException($"benchmark job ended {state.Status}: {state.Error}");
            await Task.Delay(250);
        }
    }

    private static async Task<(List<double> Latencies, double Rate)> SequentialAsync(
        HttpClient client,
        string route,
        List<byte[]> images,
        int requests,
        List<double> reported
    )
    {
        var latencies = new List<double>();
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < requests; i++)
            latencies.Add(await PredictAsync(client, route, images[i % images.Count], reported));
        return (latencies, requests / clock.Elapsed.TotalSeconds);
    }

    private static async Task<(List<double> Latencies, double Rate, int Requests, int Errors)> LoadAsync(
        ServiceProcess service,
        string route,
        List<byte[]> images,
        TimeSpan duration,
        List<(double Minutes, long Bytes)>? sample
    )
    {
        var latencies = new List<double>();
        var errors = 0;
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource(duration);
        var sampler = sample is null
            ? Task.CompletedTask
            : Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    sample.Add((clock.Elapsed.TotalMinutes, service.ResidentBytes));
                    await Task.Delay(TimeSpan.FromSeconds(10), CancellationToken.None);
                }
            });
        await Task.WhenAll(
            Enumerable
                .Range(0, Clients)
                .Select(client =>
                    Task.Run(async () =>
                    {
                        for (var i = client; !stop.IsCancellationRequested; i += Clients)
                        {
                            try
                            {
                                var latency = await PredictAsync(service.Client, route, images[i % images.Count]);
                                lock (latencies)
                                    latencies.Add(latency);
                            }
                            catch (HttpRequestException)
                            {
                                Interlocked.Increment(ref errors);
                            }
                        }
                    })
                )
        );
        await sampler;
        return (latencies, latencies.Count / clock.Elapsed.TotalSeconds, latencies.Count + errors, errors);
    }

    /// <summary>Milliseconds for one successful prediction; anything but 200 throws.</summary>
    private static async Task<double> PredictAsync(
        HttpClient client,
        string route,
        byte[] image,
        List<double>? reported = null
    )
    {
        var started = Stopwatch.GetTimestamp();
        using var response = await client.PostAsync(route, Archives.ImageForm(image));
        var body = await response.Content.ReadAsByteArrayAsync();
        var elapsed = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        if (!response.IsSuccessStatusCode)
            throw new HttpRequestException($"{(int)response.StatusCode}");
        reported?.Add(
            System.Text.Json.JsonDocument.Parse(body).RootElement.GetProperty("inferenceMilliseconds").GetDouble()
        );
        return elapsed;
    }

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToList();
        return sorted[(int)Math.Min(sorted.Count - 1, Math.Floor(p * sorted.Count))];
    }
}
