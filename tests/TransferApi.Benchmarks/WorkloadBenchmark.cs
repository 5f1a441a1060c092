using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Npgsql;
using TransferApi.TestSupport;

namespace TransferApi.Benchmarks;

/// <summary>
/// A busy deployment in miniature against the real service process and PostgreSQL: concurrent clients mixing
/// uploads, image additions, jobs (a fifth fine-tuning), cancels, predictions by id and by name@alias, alias
/// moves, namings, model and data set deletions, and another tenant probing the first one's ids. Prints every
/// answer by operation and status, the 5xx (the goal is none), the isolation probes that leaked, how long the
/// queue took to drain after the clients stopped, the checkpoint bytes written per fine-tuning job, and the
/// database's size on disk against its live data.
/// </summary>
internal static class WorkloadBenchmark
{
    private const string CheckpointBytesMetric = "transferapi_training_checkpoint_written_bytes_total";

    public static async Task RunAsync(TimeSpan duration, int clients)
    {
        if (Environment.GetEnvironmentVariable("TRANSFERAPI_TEST_POSTGRES") is not { Length: > 0 } admin)
        {
            Console.WriteLine("workload: skipped (TRANSFERAPI_TEST_POSTGRES is not set; run scripts/benchmark.sh)");
            return;
        }
        var photos = new[] { "ants", "bees" }.ToDictionary(
            l => l,
            l => TestData.AntsBeesImages("train", l).Select(File.ReadAllBytes).ToList()
        );
        var predictImages = new[] { "ants", "bees" }
            .SelectMany(l => TestData.AntsBeesImages("val", l, 10))
            .Select(File.ReadAllBytes)
            .ToList();

        // Before: one fine-tuning job checkpointing after every epoch, as the service did before
        // Worker:CheckpointInterval.
        var everyEpoch = await FineTuningCheckpointBytesAsync(admin, photos, "00:00:00");
        var defaultInterval = await FineTuningCheckpointBytesAsync(admin, photos, null);
        Console.WriteLine(
            $"workload: checkpoint bytes of one fine-tuning job: {everyEpoch / 1e6:N1} MB after every epoch, "
                + $"{defaultInterval / 1e6:N1} MB at the default interval"
        );

        await using var service = await ServiceProcess.StartAsync(
            admin,
            new Dictionary<string, string> { ["Worker__QueuePollInterval"] = "00:00:00.5" }
        );
        var busy = Client(service, await CreateKeyAsync(service.Client, "busy"));
        var prober = Client(service, await CreateKeyAsync(service.Client, "prober"));
        var state = new WorkloadState(photos, predictImages);
        state.Datasets.Add(await UploadAsync(busy, state, new Random(1)));
        var first = await PostJobAsync(busy, state.Datasets.First(), fineTune: false);
        var model = await WaitForModelAsync(busy, first!.Value);
        await busy.PatchAsJsonAsync($"/api/models/{model}", new { name = "shared" });
        await busy.PutAsync($"/api/models/{model}/aliases/prod", null);
        state.Models.Add(model);

        var clock = Stopwatch.StartNew();
        var deadline = DateTime.UtcNow + duration;
        await Task.WhenAll(
            Enumerable
                .Range(0, clients)
                .Select(c => Task.Run(() => ClientLoopAsync(busy, prober, state, new Random(100 + c), deadline)))
        );
        var stoppedAt = clock.Elapsed;
        var drained = await DrainAsync(service.ConnectionString);
        var metrics = await service.Client.GetStringAsync("/metrics");
        var written = new PrometheusText(metrics).Sum(CheckpointBytesMetric);
        var (onDisk, live, jobs, fineTuning) = await SizesAsync(service.ConnectionString);

        Console.WriteLine(
            $"workload: {clients} clients for {stoppedAt.TotalMinutes:N1} min: {state.Answers.Values.Sum()} requests, "
                + $"{jobs} jobs ({fineTuning} fine-tuning)"
        );
        foreach (var (key, count) in state.Answers.OrderBy(a => a.Key, StringComparer.Ordinal))
            Console.WriteLine($"  {key, -34} {count, 6}");
        Console.WriteLine($"workload: 5xx answers: {state.ServerErrors.Count}");
        foreach (var error in state.ServerErrors.Take(5))
            Console.WriteLine($"  {error}");
        Console.WriteLine(
            $"workload: isolation probes: {state.Probes} ({state.Leaks} answered with another tenant's data)"
        );
        Console.WriteLine($"workload: the last job ended {drained.TotalSeconds:N0} s after the clients stopped");
        Console.WriteLine(
            $"workload: checkpoints written: {written / 1e6:N1} MB in all, "
                + $"{(fineTuning == 0 ? 0 : written / fineTuning / 1e6):N1} MB per fine-tuning job"
        );
        Console.WriteLine(
            $"workload: database {onDisk / 1e6:N1} MB on disk, {live / 1e6:N1} MB live (after VACUUM FULL): "
                + $"{(double)onDisk / live:F2}x"
        );
    }

    private sealed class WorkloadState(Dictionary<string, List<byte[]>> photos, List<byte[]> predictImages)
    {
        public Dictionary<string, List<byte[]>> Photos { get; } = photos;
        public List<byte[]> PredictImages { get; } = predictImages;
        public ConcurrentBag<Guid> Datasets { get; } = [];
        public ConcurrentBag<Guid> Jobs { get; } = [];
        public ConcurrentBag<Guid> Models { get; } = [];
        public ConcurrentDictionary<string, int> Answers { get; } = new();
        public ConcurrentQueue<string> ServerErrors { get; } = new();
        private int probes,
            leaks;
        public int Probes => probes;
        public int Leaks => leaks;

        public void Probed(bool leaked)
        {
            Interlocked.Increment(ref probes);
            if (leaked)
                Interlocked.Increment(ref leaks);
        }

        public async Task<HttpResponseMessage> Record(string operation, Task<HttpResponseMessage> request)
        {
            var answer = await request;
            Answers.AddOrUpdate($"{operation} {(int)answer.StatusCode}", 1, (_, n) => n + 1);
            if ((int)answer.StatusCode >= 500)
                ServerErrors.Enqueue(
                    $"{operation}: {(int)answer.StatusCode} {await answer.Content.ReadAsStringAsync()}"
                );
            return answer;
        }
    }

    private static async Task ClientLoopAsync(
        HttpClient busy,
        HttpClient prober,
        WorkloadState state,
        Random random,
        DateTime deadline
    )
    {
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                await OneOperationAsync(busy, prober, state, random);
            }
            catch (HttpRequestException e)
            {
                state.ServerErrors.Enqueue($"connection: {e.Message}");
            }
        }
    }

    private static async Task OneOperationAsync(HttpClient busy, HttpClient prober, WorkloadState state, Random random)
    {
        T Pick<T>(ConcurrentBag<T> bag) => bag.ElementAt(random.Next(bag.Count));
        var dataset = Pick(state.Datasets);
        var model = Pick(state.Models);
        var roll = random.Next(100);
        switch (roll)
        {
            case < 8:
                state.Datasets.Add(await UploadAsync(busy, state, random));
                break;
            case < 16:
                var label = random.Next(2) == 0 ? "ants" : "bees";
                var form = Archives.ImagesForm(
                    label,
                    Enumerable
                        .Range(0, 3)
                        .Select(i => ($"{i}.jpg", state.Photos[label][random.Next(state.Photos[label].Count)]))
                );
                await state.Record("add images", busy.PostAsync($"/api/datasets/{dataset}/images", form));
                break;
            case < 32:
                var fineTune = random.Next(5) == 0;
                var created = await state.Record(
                    fineTune ? "create job (fine-tuning)" : "create job",
                    busy.PostAsJsonAsync(
                        "/api/training-jobs",
                        fineTune
                            ? new
                            {
                                datasetId = dataset,
                                epochs = 3,
                                unfreezeStages = (int?)1,
                                fineTuneEpochs = (int?)2,
                            }
                            : new
                            {
                                datasetId = dataset,
                                epochs = 5,
                                unfreezeStages = (int?)null,
                                fineTuneEpochs = (int?)null,
                            }
                    )
                );
                if (created.StatusCode == HttpStatusCode.Accepted)
                    state.Jobs.Add(Id(await created.Content.ReadAsStringAsync()));
                break;
            case < 36 when !state.Jobs.IsEmpty:
                await state.Record("cancel job", busy.PostAsync($"/api/training-jobs/{Pick(state.Jobs)}/cancel", null));
                break;
            case < 56:
                await state.Record(
                    "predict by id",
                    busy.PostAsync(
                        $"/api/models/{model}/predict",
                        Archives.ImageForm(state.PredictImages[random.Next(state.PredictImages.Count)])
                    )
                );
                break;
            case < 66:
                await state.Record(
                    "predict by alias",
                    busy.PostAsync(
                        "/api/models/shared@prod/predict",
                        Archives.ImageForm(state.PredictImages[random.Next(state.PredictImages.Count)])
                    )
                );
                break;
            case < 72:
                if (state.Jobs.IsEmpty)
                    break;
                var job = await busy.GetAsync($"/api/training-jobs/{Pick(state.Jobs)}");
                if (
                    job.StatusCode == HttpStatusCode.OK
                    && JsonDocument.Parse(await job.Content.ReadAsStringAsync()).RootElement.GetProperty("modelId")
                        is { ValueKind: JsonValueKind.String } id
                )
                {
                    var newModel = id.GetGuid();
                    await state.Record(
                        "name model",
                        busy.PatchAsJsonAsync($"/api/models/{newModel}", new { name = "shared" })
                    );
                    state.Models.Add(newModel);
                }
                break;
            case < 78:
                await state.Record("move alias", busy.PutAsync($"/api/models/{model}/aliases/prod", null));
                break;
            case < 82:
                if (state.Models.Count > 3)
                    await state.Record("delete model", busy.DeleteAsync($"/api/models/{model}"));
                break;
            case < 86:
                if (state.Datasets.Count > 3)
                    await state.Record("delete data set", busy.DeleteAsync($"/api/datasets/{dataset}"));
                break;
            default:
                // Another tenant tries the busy tenant's ids: anything but 404 would be a leak.
                var route = random.Next(3) switch
                {
                    0 => $"/api/datasets/{dataset}",
                    1 => $"/api/models/{model}",
                    _ => state.Jobs.IsEmpty ? $"/api/datasets/{dataset}" : $"/api/training-jobs/{Pick(state.Jobs)}",
                };
                var probe = await state.Record("probe other tenant", prober.GetAsync(route));
                state.Probed(probe.StatusCode != HttpStatusCode.NotFound);
                break;
        }
    }

    private static Guid Id(string json) => JsonDocument.Parse(json).RootElement.GetProperty("id").GetGuid();

    private static async Task<Guid> UploadAsync(HttpClient client, WorkloadState state, Random random)
    {
        var entries = new[] { "ants", "bees" }
            .SelectMany(label =>
                Enumerable
                    .Range(0, 8)
                    .Select(i => ($"{label}/{i}.jpg", state.Photos[label][random.Next(state.Photos[label].Count)]))
            )
            .DistinctBy(e => e.Item2)
            .ToList();
        var created = await state.Record(
            "upload data set",
            client.PostAsync("/api/datasets", Archives.DatasetForm("workload", Archives.Zip(entries)))
        );
        return created.StatusCode == HttpStatusCode.Created
            ? Id(await created.Content.ReadAsStringAsync())
            : state.Datasets.First();
    }

    private static async Task<Guid?> PostJobAsync(HttpClient client, Guid dataset, bool fineTune)
    {
        var answer = await client.PostAsJsonAsync(
            "/api/training-jobs",
            fineTune
                ? new
                {
                    datasetId = dataset,
                    epochs = 3,
                    unfreezeStages = 1,
                }
                : new
                {
                    datasetId = dataset,
                    epochs = 5,
                    unfreezeStages = 0,
                }
        );
        return answer.StatusCode == HttpStatusCode.Accepted ? Id(await answer.Content.ReadAsStringAsync()) : null;
    }

    private static async Task<Guid> WaitForModelAsync(HttpClient client, Guid job)
    {
        while (true)
        {
            var body = JsonDocument.Parse(await client.GetStringAsync($"/api/training-jobs/{job}")).RootElement;
            if (body.GetProperty("modelId") is { ValueKind: JsonValueKind.String } id)
                return id.GetGuid();
            if (body.GetProperty("status").GetString() is "Failed" or "Cancelled")
                throw new InvalidOperationException($"job {job} ended without a model");
            await Task.Delay(250);
        }
    }

    /// <summary>Bytes of checkpoints one fine-tuning job (3 head epochs, 2 of the last stage) writes at an interval, in
    /// a service of its own.</summary>
    private static async Task<double> FineTuningCheckpointBytesAsync(
        string admin,
        Dictionary<string, List<byte[]>> photos,
        string? interval
    )
    {
        var environment = new Dictionary<string, string> { ["Worker__QueuePollInterval"] = "00:00:00.5" };
        if (interval is not null)
            environment["Worker__CheckpointInterval"] = interval;
        await using var service = await ServiceProcess.StartAsync(admin, environment);
        var entries = photos
            .SelectMany(p => p.Value.Take(16).Select((bytes, i) => ($"{p.Key}/{i}.jpg", bytes)))
            .ToList();
        var created = await service.Client.PostAsync(
            "/api/datasets",
            Archives.DatasetForm("checkpoints", Archives.Zip(entries))
        );
        var job = await PostJobAsync(service.Client, Id(await created.Content.ReadAsStringAsync()), fineTune: true);
        await WaitForModelAsync(service.Client, job!.Value);
        var metrics = await service.Client.GetStringAsync("/metrics");
        return new PrometheusText(metrics).Sum(CheckpointBytesMetric);
    }

    private static async Task<string> CreateKeyAsync(HttpClient admin, string tenant)
    {
        var created = await admin.PostAsJsonAsync(
            "/api/keys",
            new
            {
                name = tenant,
                tenant,
                scope = "Train",
            }
        );
        return JsonDocument
            .Parse(await created.Content.ReadAsStringAsync())
            .RootElement.GetProperty("key")
            .GetString()!;
    }

    private static HttpClient Client(ServiceProcess service, string key)
    {
        var client = new HttpClient { BaseAddress = service.Client.BaseAddress, Timeout = TimeSpan.FromMinutes(5) };
        client.DefaultRequestHeaders.Add("X-Api-Key", key);
        return client;
    }

    /// <summary>Waits until no job is queued or running; returns how long that took.</summary>
    private static async Task<TimeSpan> DrainAsync(string connectionString)
    {
        var clock = Stopwatch.StartNew();
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        while (true)
        {
            await using var count = new NpgsqlCommand(
                """SELECT count(*) FROM training_jobs WHERE "Status" IN ('Queued', 'Running')""",
                connection
            );
            if ((long)(await count.ExecuteScalarAsync())! == 0)
                return clock.Elapsed;
            await Task.Delay(1000);
        }
    }

    private static async Task<(long OnDisk, long Live, long Jobs, long FineTuning)> SizesAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        async Task<long> Scalar(string sql)
        {
            await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 600 };
            return Convert.ToInt64(await command.ExecuteScalarAsync(), CultureInfo.InvariantCulture);
        }
        var jobs = await Scalar("SELECT count(*) FROM training_jobs");
        var fineTuning = await Scalar(
            """
            SELECT count(*) FROM training_jobs WHERE ("Options"->>'UnfreezeStages')::int > 0 AND "StartedAt" IS
            NOT NULL
            """
        );
        var onDisk = await Scalar("SELECT pg_database_size(current_database())");
        await Scalar("VACUUM FULL");
        return (onDisk, await Scalar("SELECT pg_database_size(current_database())"), jobs, fineTuning);
    }
}
