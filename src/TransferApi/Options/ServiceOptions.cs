using System.ComponentModel.DataAnnotations;
using TransferApi.Training.Backbones;
using TransferApi.Training.FineTuning;

namespace TransferApi.Options;

/// <summary>Which roles this process plays: one image scales out as API replicas and worker replicas.</summary>
[Flags]
public enum ServiceRoles
{
    None = 0,
    Api = 1,
    Worker = 2,
    All = Api | Worker,
}

/// <summary>Section "Service".</summary>
public sealed class ServiceOptions
{
    public const string Section = "Service";

    /// <summary>
    /// Api (HTTP routes, no jobs run), Worker (runs jobs; serves only health checks and /metrics) or All: one image
    /// scales out as API and worker replicas.
    /// </summary>
    public ServiceRoles Roles { get; set; } = ServiceRoles.All;

    /// <summary>Apply EF Core migrations at start-up (on in Development; production runs `TransferApi migrate`
    /// once).</summary>
    public bool MigrateOnStartup { get; set; }

    /// <summary>
    /// How long a stopping process waits for running jobs to checkpoint at their next batch and go back to the
    /// queue, and for in-flight requests to finish. Keep it below the orchestrator's grace period.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")]
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(30);
}

/// <summary>Section "Worker": how much of the machine training takes.</summary>
public sealed class WorkerOptions
{
    public const string Section = "Worker";

    /// <summary>Training jobs one worker process runs at once.</summary>
    [Range(1, 64)]
    public int ConcurrentJobs { get; set; } = 1;

    /// <summary>libtorch intra-op threads; default: the cores divided among concurrent jobs.</summary>
    [Range(1, 1024)]
    public int? TorchThreads { get; set; }

    /// <summary>
    /// Linux nice value of the threads that run jobs (and of the threads they start): predictions in the same process
    /// get the cores first while a job trains, and the job keeps them all when none arrives. 0 gives jobs the same
    /// priority as predictions.
    /// </summary>
    [Range(0, 19)]
    public int JobNice { get; set; } = 19;

    /// <summary>How often the worker polls the Hangfire queue.</summary>
    public TimeSpan QueuePollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How long a job whose worker stopped answering stays claimed before another worker takes it over. A live
    /// worker keeps extending its claim (sliding), so long jobs are never taken from it.
    /// </summary>
    public TimeSpan InvisibilityTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Least time between two crash-recovery checkpoints of a running job (a crash loses at most this much work,
    /// rounded up to a batch). Zero writes one after every epoch. A graceful shutdown always checkpoints.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan CheckpointInterval { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How often a worker hands queued jobs to free workers even when nothing else prompts it (a lost
    /// notification, a restarted worker).</summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "01:00:00")]
    public TimeSpan DispatchInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Folder holding the pretrained backbone files; default: beside the executable.</summary>
    public string? BackboneDirectory { get; set; }

    /// <summary>
    /// Most bytes of fine-tuning activations (the tensor entering the first unfrozen stage, about 0.4 MB per image
    /// for two ResNet18 stages) a job keeps in memory; beyond it they go by <see cref="ActivationOverflow"/>.
    /// </summary>
    [Range(0, long.MaxValue)]
    public long ActivationMemoryBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary>Auto spills to <see cref="ActivationSpillDirectory"/> when its disk has room and recomputes
    /// otherwise.</summary>
    public ActivationOverflow ActivationOverflow { get; set; } = ActivationOverflow.Auto;

    /// <summary>Where spilled activations go (a file per job, deleted when it ends); default: the system's temporary
    /// folder.</summary>
    public string? ActivationSpillDirectory { get; set; }

    /// <summary>
    /// glibc's mmap threshold in a process that runs jobs: buffers this large or larger are returned to the system
    /// when freed instead of fragmenting the heap. 4 MiB cut a fine-tuning job's peak by a quarter at no
    /// measured cost in time (docs/benchmarks.md); 0 leaves glibc's own sliding threshold.
    /// </summary>
    [Range(0, 32 * 1024 * 1024)]
    public int MallocMmapThresholdBytes { get; set; } = 4 * 1024 * 1024;

    public ActivationBudget ActivationBudget =>
        new(ActivationMemoryBytes, ActivationOverflow, ActivationSpillDirectory);

    public int EffectiveTorchThreads => TorchThreads ?? Math.Max(1, Environment.ProcessorCount / ConcurrentJobs);
}

/// <summary>Section "Backbones": how the frozen backbones run.</summary>
public sealed class BackboneOptions
{
    public const string Section = "Backbones";

    /// <summary>
    /// Number format of the frozen forward passes. Auto measures float32 and bfloat16 once when a backbone loads and
    /// keeps bfloat16 only where it is at least 1.1x faster and its features agree (cosine at least 0.999 on a
    /// fixed probe batch); without bfloat16 instructions (amx_bf16, avx512_bf16) it keeps float32 unmeasured. Fp32
    /// and Bf16 force one.
    /// </summary>
    public BackbonePrecision Precision { get; set; } = BackbonePrecision.Auto;
}

/// <summary>Section "Uploads": limits on untrusted archives and images.</summary>
public sealed class UploadOptions
{
    public const string Section = "Uploads";

    /// <summary>Largest request body accepted for an upload.</summary>
    [Range(1024, long.MaxValue)]
    public long MaxRequestBytes { get; set; } = 4L * 1024 * 1024 * 1024;

    /// <summary>Largest backbone weights file accepted by POST /api/backbones (a full VGG16 checkpoint is 528
    /// MB).</summary>
    [Range(1024, 2L * 1024 * 1024 * 1024)]
    public long MaxBackboneWeightsBytes { get; set; } = 1024L * 1024 * 1024;

    /// <summary>Most entries (files and folders) an archive may hold.</summary>
    [Range(1, int.MaxValue)]
    public int MaxEntries { get; set; } = 20_000;

    /// <summary>Largest uncompressed size of one archive entry.</summary>
    [Range(1, long.MaxValue)]
    public long MaxEntryBytes { get; set; } = 32L * 1024 * 1024;

    /// <summary>Largest total uncompressed size of an archive.</summary>
    [Range(1, long.MaxValue)]
    public long MaxTotalBytes { get; set; } = 8L * 1024 * 1024 * 1024;

    /// <summary>Most decoded pixels of one image (width x height).</summary>
    [Range(1, long.MaxValue)]
    public long MaxImagePixels { get; set; } = 40_000_000;

    /// <summary>Longest side of one image, in pixels.</summary>
    [Range(1, int.MaxValue)]
    public int MaxImageSide { get; set; } = 16_384;

    /// <summary>Largest uncompressed/compressed size ratio of an entry over 1 MiB; more betrays a zip bomb.</summary>
    [Range(1, int.MaxValue)]
    public int MaxCompressionRatio { get; set; } = 100;

    /// <summary>Most image files in one request to add images to a data set.</summary>
    [Range(1, int.MaxValue)]
    public int MaxFilesPerRequest { get; set; } = 1000;

    /// <summary>Largest single image accepted by /predict.</summary>
    [Range(1, long.MaxValue)]
    public long MaxPredictBytes { get; set; } = 20L * 1024 * 1024;

    public Training.Imaging.ImageLimits ImageLimits => new() { MaxPixels = MaxImagePixels, MaxSide = MaxImageSide };
}

/// <summary>Section "Datasets": how data sets are split and when they can be trained.</summary>
public sealed class DatasetOptions
{
    public const string Section = "Datasets";

    /// <summary>Fewest images a class needs for the data set to be trainable (10 or more is recommended).</summary>
    [Range(1, 1_000_000)]
    public int MinImagesPerClass { get; set; } = 2;

    /// <summary>Default share of each class held out for validation when the archive fixes no split.</summary>
    [Range(0.0, 0.9)]
    public double DefaultValidationFraction { get; set; } = 0.2;

    /// <summary>Default share of each class held out for the final test when the archive fixes no split.</summary>
    [Range(0.0, 0.9)]
    public double DefaultTestFraction { get; set; }

    /// <summary>Default seed of that split.</summary>
    public long DefaultSplitSeed { get; set; } = 42;

    /// <summary>Images written per database round trip while ingesting; bounds memory with <see
    /// cref="IngestBatchBytes"/>.</summary>
    [Range(1, 10_000)]
    public int IngestBatchSize { get; set; } = 64;

    /// <summary>Encoded bytes buffered before a database round trip while ingesting.</summary>
    [Range(1024, int.MaxValue)]
    public int IngestBatchBytes { get; set; } = 16 * 1024 * 1024;
}

/// <summary>Section "Serving": the model cache and dynamic batching of /predict.</summary>
public sealed class ServingOptions
{
    public const string Section = "Serving";

    /// <summary>Bytes of loaded models (heads and fine-tuned stages; the shared backbone is not counted) kept in
    /// memory; least recently used go first.</summary>
    [Range(1024, long.MaxValue)]
    public long ModelCacheBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary>Most images one forward pass groups from concurrent requests for a model.</summary>
    [Range(1, 1024)]
    public int MaxBatchSize { get; set; } = 16;

    /// <summary>
    /// How long the first request of a batch waits for others. Zero (the default) never delays a lone request:
    /// requests that arrive while a forward pass runs still form the next batch.
    /// </summary>
    public TimeSpan MaxQueueDelay { get; set; } = TimeSpan.Zero;

    /// <summary>Most images in one predict request.</summary>
    [Range(1, 1024)]
    public int MaxImagesPerRequest { get; set; } = 32;

    /// <summary>
    /// Share of in-distribution images a model accepts: its novelty threshold is this quantile of its validation
    /// images' scores, so about 1 - this share of ordinary images are flagged unknown (docs/trust.md).
    /// </summary>
    [Range(0.5, 1.0)]
    public double NoveltyAcceptance { get; set; } = 0.95;
}

/// <summary>Section "Quotas": how much work and storage one tenant may hold, so no tenant can starve the
/// others.</summary>
public sealed class QuotaOptions
{
    public const string Section = "Quotas";

    /// <summary>Jobs a tenant may have waiting (Queued); one more is refused with 429 and Retry-After. Null: no
    /// limit.</summary>
    [Range(1, 1_000_000)]
    public int? MaxQueuedJobsPerTenant { get; set; } = 20;

    /// <summary>Jobs of one tenant the workers run at once; the rest wait even when workers are free. Null: no
    /// limit.</summary>
    [Range(1, 10_000)]
    public int? MaxRunningJobsPerTenant { get; set; }

    /// <summary>Bytes of images and models a tenant may store; an upload beyond it is refused with 413. Null (the
    /// default): no limit.</summary>
    [Range(1, long.MaxValue)]
    public long? MaxStoredBytesPerTenant { get; set; }

    /// <summary>Seconds a job's recipe search may be given (tuning.budgetSeconds above it is refused with
    /// 400).</summary>
    [Range(1, 3600)]
    public double MaxTuningBudgetSeconds { get; set; } = 300;
}
