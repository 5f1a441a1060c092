using TransferApi.Benchmarks;

// scripts/benchmark.sh [backbone|training|ingestion|serving] runs these with a PostgreSQL for the ingestion and serving
// parts.
var what = args.FirstOrDefault() ?? "all";
if (what is "all" or "backbone")
    BackboneBenchmark.Run(repeats: 5);
if (what is "all" or "training")
    TrainingBenchmark.Run();
if (what is "all" or "health")
    HealthBenchmark.Run();
if (what is "all" or "trust")
    TrustBenchmark.Run();
if (what is "all" or "tuning")
    TuningBenchmark.Run(
        searchOnly: args.Contains("--search-only"),
        precision: args.SkipWhile(a => a != "--precision")
            .Skip(1)
            .Select(a => Enum.Parse<TransferApi.Training.Backbones.BackbonePrecision>(a, ignoreCase: true))
            .FirstOrDefault(TransferApi.Training.Backbones.BackbonePrecision.Fp32)
    );
if (what is "all" or "speed")
    await SpeedBenchmark.RunAsync(rounds: 5);
if (what is "all" or "ingestion")
    await IngestionBenchmark.RunAsync(args.Contains("--quick"));
var soakMinutes = args.SkipWhile(a => a != "--soak-minutes").Skip(1).Select(double.Parse).FirstOrDefault(5);
if (what is "all" or "serving")
    await ServingBenchmark.RunAsync(TimeSpan.FromMinutes(args.Contains("--quick") ? 0 : soakMinutes));

// Not part of "all": issue 18's bulk scoring against /predict, and webhook latency (bulk).
if (what is "bulk")
    await BulkScoringBenchmark.RunAsync();

// Not part of "all": minutes of mixed load against the real service (workload [--minutes N] [--clients N]).
if (what is "workload")
{
    double Option(string name, double fallback) =>
        args.SkipWhile(a => a != name).Skip(1).Select(double.Parse).FirstOrDefault(fallback);
    await WorkloadBenchmark.RunAsync(TimeSpan.FromMinutes(Option("--minutes", 5)), (int)Option("--clients", 8));
}

// Not part of "all": issue 20's job sequence (memory [--jobs N] [--images N]).
if (what is "memory")
{
    int Count(string name, int fallback) =>
        args.SkipWhile(a => a != name).Skip(1).Select(int.Parse).FirstOrDefault(fallback);
    await MemoryBenchmark.RunAsync(Count("--jobs", 20), Count("--jobs", 20), Count("--images", 244));
}

// Not part of "all": fine-tuning's peak memory and time by activation budget (finetune [--images 1000,10000] [--epochs
// N] [--overflow]).
if (what is "finetune")
{
    var counts = args.SkipWhile(a => a != "--images")
        .Skip(1)
        .Select(a => a.Split(',').Select(int.Parse).ToList())
        .FirstOrDefault([1000, 10000]);
    var epochs = args.SkipWhile(a => a != "--epochs").Skip(1).Select(int.Parse).FirstOrDefault(1);
    await FineTuneMemoryBenchmark.RunAsync(counts, epochs, args.Contains("--overflow"));
}
