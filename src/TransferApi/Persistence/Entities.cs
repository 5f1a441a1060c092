using TransferApi.Persistence.Documents;
using TransferApi.Training;
using TransferApi.Training.Evaluation;
using TransferApi.Training.FineTuning;

namespace TransferApi.Persistence;

/// <summary>Rows that belong to one tenant: only keys of that tenant see them (a query filter on the
/// context).</summary>
public interface ITenantOwned
{
    string Tenant { get; set; }
}

public sealed class Dataset : ITenantOwned
{
    public Guid Id { get; set; }
    public string Tenant { get; set; } = "";
    public required string Name { get; set; }
    public DateTime CreatedAt { get; set; }

    /// <summary>How images without a split from the archive's folders are split: shares and seed.</summary>
    public double ValidationFraction { get; set; }
    public double TestFraction { get; set; }
    public long SplitSeed { get; set; }

    /// <summary>Counts every change to the data set's images (added, relabelled, moved, removed, re-split): a health
    /// report of an older version is stale.</summary>
    public long Version { get; set; }

    /// <summary>Entries of the uploaded archive that were not stored, with the reason.</summary>
    public List<RejectedEntry> Rejected { get; set; } = [];
    public List<DatasetImage> Images { get; set; } = [];
}

public sealed class RejectedEntry
{
    public required string Entry { get; set; }
    public required string Reason { get; set; }
}

public sealed class DatasetImage
{
    public Guid Id { get; set; }
    public Guid DatasetId { get; set; }

    /// <summary>Its class; null for an image uploaded without one, whose split is then <see
    /// cref="DataSplit.Unlabeled"/>.</summary>
    public string? Label { get; set; }
    public DataSplit Split { get; set; }

    /// <summary>True when the split came from the archive's train/ val/ test/ folders (or a client) and re-splitting
    /// keeps it.</summary>
    public bool SplitFixed { get; set; }

    /// <summary>Path of the image inside the uploaded archive, or the uploaded file name.</summary>
    public required string FileName { get; set; }
    public required string Format { get; set; }
    public int Width { get; set; }
    public int Height { get; set; }
    public int SizeBytes { get; set; }
    public required byte[] Sha256 { get; set; }

    /// <summary>The encoded image exactly as uploaded (validated by a full decode first).</summary>
    public required byte[] Data { get; set; }

    /// <summary>A large photo's upright, smaller JPEG that jobs and health passes decode instead of <see cref="Data"/>
    /// (<see cref="Training.Imaging.WorkingCopy"/>); null for images small enough to decode as they are.</summary>
    public byte[]? WorkingCopy { get; set; }
}

public enum HealthStatus
{
    Pending,
    Running,
    Ready,
    Failed,
}

/// <summary>
/// One data set's health: the computation asked for (or under way, or last run) and the last report one produced,
/// which stays readable, marked stale, while a newer one is computed.
/// </summary>
public sealed class DatasetHealthRow
{
    public Guid DatasetId { get; set; }
    public HealthStatus Status { get; set; }

    /// <summary>The backbone health is computed with: the default until a client asks for another.</summary>
    public required string Backbone { get; set; }

    /// <summary>The data set version the pending, running or last computation is for.</summary>
    public long RequestedVersion { get; set; }

    /// <summary>Share of the current computation done, 0 to 1.</summary>
    public double Progress { get; set; }
    public string? Error { get; set; }
    public DateTime UpdatedAt { get; set; }
    public HealthReportDocument? Report { get; set; }
    public HealthCountsDocument? Counts { get; set; }
}

public enum JobStatus
{
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

public sealed class TrainingJob : ITenantOwned
{
    public Guid Id { get; set; }
    public string Tenant { get; set; } = "";
    public Guid DatasetId { get; set; }
    public JobStatus Status { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime? StartedAt { get; set; }
    public DateTime? FinishedAt { get; set; }
    public required string Backbone { get; set; }

    /// <summary>Every training option of the job, stored as a versioned JSON document.</summary>
    public required TrainingOptions Options { get; set; }

    /// <summary>The latest progress report, stored as a versioned JSON document on the job row.</summary>
    public required TrainingProgress Progress { get; set; }
    public Guid? ModelId { get; set; }
    public string? Error { get; set; }
    public string? HangfireJobId { get; set; }

    /// <summary>When the job was handed to Hangfire (only as workers free up, round-robin across tenants); null while
    /// it waits its turn.</summary>
    public DateTime? DispatchedAt { get; set; }

    /// <summary>The model on held-out images, written when the job ends with a model.</summary>
    public ClassificationReport? Report { get; set; }

    /// <summary>Each class's precision and recall over thresholds, written with <see cref="Report"/>.</summary>
    public ThresholdReport? Thresholds { get; set; }

    /// <summary>The recipe search the job ran before training (null: none asked for).</summary>
    public TransferApi.Training.Tuning.TuningResult? Tuning { get; set; }

    /// <summary>Set by POST …/cancel on a running job; the worker notices within one batch.</summary>
    public bool CancelRequested { get; set; }

    /// <summary>Name the model gets when the job succeeds (as its next version), if the client gave one.</summary>
    public string? ModelName { get; set; }

    /// <summary>The last epoch saved in <see cref="TrainingCheckpointRow"/> while the job runs: a lost worker's job
    /// resumes after it.</summary>
    public int? CheckpointEpoch { get; set; }

    /// <summary>Set when a worker took the job over from a checkpoint: the epoch it continued after.</summary>
    public int? ResumedFromEpoch { get; set; }

    /// <summary>Set when that checkpoint was taken between batches (a worker shutting down): the batches of the next
    /// epoch already done.</summary>
    public int? ResumedFromBatch { get; set; }

    /// <summary>Fine-tuning only: where the job keeps its activations (set once the first batch shows their
    /// size).</summary>
    public ActivationStorage? ActivationStorage { get; set; }
    public long? ActivationBytes { get; set; }

    /// <summary>The worker's Worker:ActivationMemoryBytes when it decided.</summary>
    public long? ActivationBudgetBytes { get; set; }
    public List<TrainingMetric> Metrics { get; set; } = [];
}

/// <summary>The latest resumable point of a running job (the training core's opaque checkpoint); deleted when the job
/// ends.</summary>
public sealed class TrainingCheckpointRow
{
    public Guid JobId { get; set; }
    public int Epoch { get; set; }
    public required byte[] Data { get; set; }
    public DateTime SavedAt { get; set; }
}

public sealed class TrainingMetric
{
    public Guid JobId { get; set; }
    public int Epoch { get; set; }
    public double TrainLoss { get; set; }
    public double? ValLoss { get; set; }
    public double? ValAccuracy { get; set; }
    public double LearningRate { get; set; }
    public DateTime RecordedAt { get; set; }
}

public sealed class TrainedModel : ITenantOwned
{
    public Guid Id { get; set; }
    public string Tenant { get; set; } = "";
    public Guid JobId { get; set; }
    public Guid DatasetId { get; set; }
    public required string Backbone { get; set; }
    public required List<string> Labels { get; set; }
    public required TransferApi.Training.Imaging.PreprocessingSpec Preprocessing { get; set; }
    public int FeatureSize { get; set; }
    public required HeadSpec Head { get; set; }

    /// <summary>The trained head only (kilobytes); the frozen backbone is referenced by <see
    /// cref="Backbone"/>.</summary>
    public required byte[] HeadWeights { get; set; }

    /// <summary>Backbone stages the model fine-tuned (0: frozen backbone) and their weights, the only part of the
    /// backbone it stores.</summary>
    public int FineTunedStages { get; set; }
    public byte[]? TailWeights { get; set; }

    /// <summary>Temperature scaling of the logits (null: trained before calibration existed, or too few images; the
    /// temperature is then 1).</summary>
    public Calibration? Calibration { get; set; }

    /// <summary>The novelty model's settings and reference scores (null: trained before it existed), and its bank of
    /// training features, kept apart so listing models never reads the bank.</summary>
    public NoveltySettings? Novelty { get; set; }
    public float[]? NoveltyBank { get; set; }

    /// <summary>Each label's recommended probability threshold, in label order (null: none computed).</summary>
    public List<double>? Thresholds { get; set; }
    public DateTime CreatedAt { get; set; }
    public double? ValAccuracy { get; set; }
    public double? ValLoss { get; set; }
    public double TrainLoss { get; set; }
    public int TrainImages { get; set; }
    public int ValidationImages { get; set; }
    public double FeatureExtractionSeconds { get; set; }
    public double HeadTrainingSeconds { get; set; }

    /// <summary>Images this job ran through the backbone, and images whose features came from the cache.</summary>
    public int ImagesEmbedded { get; set; }
    public int FeaturesFromCache { get; set; }

    /// <summary>The epoch whose weights the model holds (early stopping may choose an earlier one than the
    /// last).</summary>
    public int BestEpoch { get; set; }
    public bool StoppedEarly { get; set; }

    /// <summary>Models sharing a name are versions of one model (1, 2, …, in the order they were named).</summary>
    public string? Name { get; set; }
    public int? Version { get; set; }
    public List<ModelAlias> Aliases { get; set; } = [];
}

/// <summary>A stored novelty model without its bank (see <see
/// cref="TransferApi.Training.Evaluation.NoveltyModel"/>).</summary>
public sealed record NoveltySettings(int K, int Dimension, string Reference, double[] ReferenceScores);

/// <summary>One held-out image's outcome in a job's report (the report's split: test, else validation).</summary>
public sealed class EvaluatedImageRow
{
    public Guid JobId { get; set; }
    public Guid ImageId { get; set; }
    public required string Label { get; set; }
    public required string Predicted { get; set; }
    public double Probability { get; set; }
    public double Loss { get; set; }
    public double? Novelty { get; set; }
}

/// <summary>A movable label on one version of a named model (<c>name@production</c>).</summary>
public sealed class ModelAlias : ITenantOwned
{
    public string Tenant { get; set; } = "";
    public required string Name { get; set; }
    public required string Alias { get; set; }
    public Guid ModelId { get; set; }
    public DateTime UpdatedAt { get; set; }
}

/// <summary>A backbone an operator registered from a weights file: an architecture, its weights (shared by content
/// hash) and preprocessing.</summary>
public sealed class RegisteredBackbone
{
    public required string Id { get; set; }
    public required string Architecture { get; set; }
    public required TransferApi.Training.Imaging.PreprocessingSpec Preprocessing { get; set; }
    public required byte[] WeightsSha256 { get; set; }
    public long ParameterCount { get; set; }

    /// <summary>Where the weights came from: the uploaded file's name, format and size.</summary>
    public required string Source { get; set; }
    public DateTime CreatedAt { get; set; }
}

/// <summary>
/// Imported weights in their canonical form (float32, the architecture's names, TorchSharp's format), stored once
/// per content hash in PostgreSQL so every worker can load them on demand.
/// </summary>
public sealed class BackboneWeights
{
    public required byte[] Sha256 { get; set; }
    public required byte[] Data { get; set; }
    public DateTime CreatedAt { get; set; }
}

/// <summary>
/// A frozen backbone's features of one image, keyed by backbone and the image's SHA-256: computed once, reused
/// by every later job (and data set) holding the same bytes.
/// </summary>
public sealed class ImageFeatures
{
    public required string BackboneId { get; set; }
    public required byte[] Sha256 { get; set; }
    public required float[] Values { get; set; }
    public DateTime CreatedAt { get; set; }
}

/// <summary>What a key may do: predict only, train (data sets, jobs, models, predict), or everything including keys and
/// backbones.</summary>
public enum KeyScope
{
    Predict,
    Train,
    Admin,
}

/// <summary>
/// An API key. Only its SHA-256 is stored (keys are 256 random bits, so a fast hash is enough); the secret is
/// shown once, when it is created. A revoked key stays listed with its revocation time.
/// </summary>
public sealed class ApiKey
{
    public Guid Id { get; set; }
    public required string Name { get; set; }

    /// <summary>The tenant whose data sets, jobs and models the key works with.</summary>
    public required string Tenant { get; set; }
    public KeyScope Scope { get; set; }
    public required byte[] Sha256 { get; set; }

    /// <summary>The secret's first characters, to tell keys apart in listings and logs.</summary>
    public required string Prefix { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime? RevokedAt { get; set; }
}

/// <summary>
/// A POST's answer kept under its tenant's Idempotency-Key for retries. <see cref="CompletedAt"/> is null while the
/// first request with the key runs; only successful answers are kept (a failed request leaves no record, so its
/// retry runs again).
/// </summary>
public sealed class IdempotencyRecord
{
    public const int MaxKeyLength = 255;

    public required string Tenant { get; set; }
    public required string Key { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime? CompletedAt { get; set; }

    /// <summary>SHA-256 of the method, path, query, media type and body (a multipart boundary left out).</summary>
    public byte[]? Fingerprint { get; set; }
    public int? StatusCode { get; set; }
    public string? ContentType { get; set; }
    public string? Location { get; set; }
    public byte[]? Body { get; set; }
}

/// <summary>A tenant's receiver of events: an http(s) URL, the event types it subscribed to, and its signing
/// secret.</summary>
public sealed class Webhook : ITenantOwned
{
    public const int MaxUrlLength = 2000;
    public const int MaxDescriptionLength = 500;

    public Guid Id { get; set; }
    public string Tenant { get; set; } = "";
    public required string Url { get; set; }
    public required List<string> Events { get; set; }
    public string? Description { get; set; }

    /// <summary>The signing secret, encrypted by <c>SecretProtection</c> (Data Protection): unreadable from a
    /// dump.</summary>
    public required string ProtectedSecret { get; set; }
    public DateTime CreatedAt { get; set; }
}

public enum DeliveryState
{
    Pending,
    Succeeded,
    Failed,
}

/// <summary>
/// One event on its way to one webhook. Every attempt sends the same <see cref="Payload"/> (and event id), so a
/// receiver can drop repeats; <see cref="NextAttemptAt"/> is when the next attempt is due while it is Pending.
/// </summary>
public sealed class WebhookDelivery
{
    public Guid Id { get; set; }
    public Guid WebhookId { get; set; }
    public Guid EventId { get; set; }
    public required string EventType { get; set; }
    public DateTime CreatedAt { get; set; }

    /// <summary>The JSON body exactly as sent: the signature covers these bytes.</summary>
    public required string Payload { get; set; }
    public DeliveryState State { get; set; }
    public DateTime? NextAttemptAt { get; set; }
    public List<DeliveryAttemptDocument> Attempts { get; set; } = [];
}

/// <summary>
/// A model scoring every image of a data set (or one split of it) in a worker: the bulk form of /predict, reading
/// cached frozen features where the model allows.
/// </summary>
public sealed class BatchPrediction : ITenantOwned
{
    public Guid Id { get; set; }
    public string Tenant { get; set; } = "";
    public Guid ModelId { get; set; }

    /// <summary>The data set scored; null when the client uploaded the images (<see
    /// cref="BatchPredictionImage"/>).</summary>
    public Guid? DatasetId { get; set; }

    /// <summary>The uploaded zip's file name, when the images were uploaded.</summary>
    public string? ArchiveName { get; set; }

    /// <summary>Files of an uploaded zip that are not scored, and why.</summary>
    public List<RejectedEntry> Rejected { get; set; } = [];

    /// <summary>Which images: null for all, else one split.</summary>
    public DataSplit? Split { get; set; }
    public int TopK { get; set; }
    public JobStatus Status { get; set; }
    public bool CancelRequested { get; set; }
    public int ImagesTotal { get; set; }
    public int ImagesDone { get; set; }

    /// <summary>Images whose features came from the cache (no backbone pass).</summary>
    public int ImagesFromCache { get; set; }
    public string? Error { get; set; }
    public string? HangfireJobId { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime? StartedAt { get; set; }
    public DateTime? FinishedAt { get; set; }
}

/// <summary>An image of a zip uploaded to be scored; kept only until its batch prediction ends.</summary>
public sealed class BatchPredictionImage
{
    public Guid Id { get; set; }
    public Guid BatchId { get; set; }

    /// <summary>Its place in the zip (and in the results).</summary>
    public int Position { get; set; }

    /// <summary>Its path inside the zip.</summary>
    public required string FileName { get; set; }
    public required byte[] Sha256 { get; set; }

    /// <summary>The encoded image as uploaded (validated by a full decode first).</summary>
    public required byte[] Data { get; set; }

    /// <summary>As <see cref="DatasetImage.WorkingCopy"/>.</summary>
    public byte[]? WorkingCopy { get; set; }
}

/// <summary>One image's answer in a batch prediction, as /predict would give it.</summary>
public sealed class BatchPredictionResult
{
    public Guid BatchId { get; set; }

    /// <summary>The image's place in the results (the data set's or the zip's image order).</summary>
    public int Position { get; set; }

    /// <summary>The data set image; null for an uploaded one.</summary>
    public Guid? ImageId { get; set; }
    public required string FileName { get; set; }
    public string? Label { get; set; }

    /// <summary>The data set image's split; null for an uploaded one.</summary>
    public DataSplit? Split { get; set; }
    public required List<LabelProbabilityDocument> Predictions { get; set; }
    public double? Novelty { get; set; }
    public bool? Unknown { get; set; }
}
