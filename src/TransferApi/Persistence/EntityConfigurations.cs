using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.DataProtection.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;
using TransferApi.Persistence.Documents;
using TransferApi.Services;
using TransferApi.Training;
using TransferApi.Training.Evaluation;
using TransferApi.Training.Imaging;
using TransferApi.Training.Tuning;

namespace TransferApi.Persistence;

internal sealed class DatasetConfiguration : IEntityTypeConfiguration<Dataset>
{
    public void Configure(EntityTypeBuilder<Dataset> builder)
    {
        builder.ToTable("datasets");
        builder.Property(e => e.Tenant).HasMaxLength(100);
        builder.HasIndex(e => e.Tenant);
        builder.Property(d => d.Name).HasMaxLength(200);
        builder.HasIndex(d => d.CreatedAt);
        builder.OwnsMany(d => d.Rejected, r => r.ToJson("rejected"));
        builder.HasMany(d => d.Images).WithOne().HasForeignKey(i => i.DatasetId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class DatasetImageConfiguration : IEntityTypeConfiguration<DatasetImage>
{
    public void Configure(EntityTypeBuilder<DatasetImage> builder)
    {
        // An image has a label exactly when it is not in the unlabeled split.
        builder.ToTable("dataset_images", t =>
            t.HasCheckConstraint(
                "CK_dataset_images_label_or_unlabeled",
                "(\"Label\" IS NULL) = (\"Split\" = 'Unlabeled')"
            )
        );
        builder.Property(i => i.Label).HasMaxLength(200);
        builder.Property(i => i.FileName).HasMaxLength(1024);
        builder.Property(i => i.Format).HasMaxLength(32);
        builder.Property(i => i.Split).HasConversion<string>().HasMaxLength(16);
        builder.HasIndex(i => new { i.DatasetId, i.Label });
        // The same bytes are stored once per data set, even under concurrent uploads.
        builder.HasIndex(i => new { i.DatasetId, i.Sha256 }).IsUnique();
    }
}

internal sealed class DatasetHealthConfiguration : IEntityTypeConfiguration<DatasetHealthRow>
{
    public void Configure(EntityTypeBuilder<DatasetHealthRow> builder)
    {
        builder.ToTable("dataset_health");
        builder.HasKey(h => h.DatasetId);
        builder.Property(h => h.Status).HasConversion<string>().HasMaxLength(16);
        builder.Property(h => h.Backbone).HasMaxLength(100);
        builder
            .Property(h => h.Report)
            .HasColumnType("jsonb")
            .HasConversion(
                JsonColumn.NullableConverter<HealthReportDocument, HealthReportDocument>(d => d, d => d),
                JsonColumn.Comparer<HealthReportDocument>()
            );
        builder
            .Property(h => h.Counts)
            .HasColumnType("jsonb")
            .HasConversion(
                JsonColumn.NullableConverter<HealthCountsDocument, HealthCountsDocument>(d => d, d => d),
                JsonColumn.Comparer<HealthCountsDocument>()
            );
        builder
            .HasOne<Dataset>()
            .WithOne()
            .HasForeignKey<DatasetHealthRow>(h => h.DatasetId)
            .OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class TrainingJobConfiguration : IEntityTypeConfiguration<TrainingJob>
{
    public void Configure(EntityTypeBuilder<TrainingJob> builder)
    {
        builder.ToTable("training_jobs");
        builder.Property(e => e.Tenant).HasMaxLength(100);
        builder.HasIndex(e => e.Tenant);
        builder.Property(j => j.Status).HasConversion<string>().HasMaxLength(16);
        builder.Property(j => j.ActivationStorage).HasConversion<string>().HasMaxLength(16);
        builder.Property(j => j.Backbone).HasMaxLength(100);
        builder.Property(j => j.HangfireJobId).HasMaxLength(100);
        builder.Property(j => j.ModelName).HasMaxLength(ModelNames.MaxLength);
        builder
            .Property(j => j.Report)
            .HasColumnType("jsonb")
            .HasConversion(
                JsonColumn.NullableConverter<ClassificationReport, ClassificationReportDocument>(
                    d => d.ToReport(),
                    r => r.ToDocument()
                ),
                JsonColumn.Comparer<ClassificationReport>()
            );
        builder
            .Property(j => j.Thresholds)
            .HasColumnType("jsonb")
            .HasConversion(
                JsonColumn.NullableConverter<ThresholdReport, ThresholdReportDocument>(
                    d => d.ToThresholds(),
                    t => t.ToDocument()
                ),
                JsonColumn.Comparer<ThresholdReport>()
            );
        builder
            .Property(j => j.Tuning)
            .HasColumnType("jsonb")
            .HasConversion(
                JsonColumn.NullableConverter<TuningResult, TuningResultDocument>(
                    d => d.ToTuning(),
                    t => t.ToDocument()
                ),
                JsonColumn.Comparer<TuningResult>()
            );
        builder
            .Property(j => j.Options)
            .HasColumnType("jsonb")
            .HasConversion(
                JsonColumn.Converter<TrainingOptions, TrainingOptionsDocument>(d => d.ToOptions(), o => o.ToDocument()),
                JsonColumn.Comparer<TrainingOptions>()
            );
        builder.HasIndex(j => j.CreatedAt);
        // The dispatcher and the quotas look up a tenant's jobs by status.
        builder.HasIndex(j => new { j.Status, j.Tenant });
        builder
            .Property(j => j.Progress)
            .HasColumnType("jsonb")
            .HasConversion(
                JsonColumn.Converter<TrainingProgress, TrainingProgressDocument>(
                    d => d.ToProgress(),
                    p => p.ToDocument()
                ),
                JsonColumn.Comparer<TrainingProgress>()
            );
        // A data set that jobs were trained on cannot disappear under them (DELETE answers 409).
        builder.HasOne<Dataset>().WithMany().HasForeignKey(j => j.DatasetId).OnDelete(DeleteBehavior.Restrict);
        builder.HasMany(j => j.Metrics).WithOne().HasForeignKey(m => m.JobId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class TrainingCheckpointConfiguration : IEntityTypeConfiguration<TrainingCheckpointRow>
{
    public void Configure(EntityTypeBuilder<TrainingCheckpointRow> builder)
    {
        builder.ToTable("training_checkpoints");
        // One row per job, overwritten after every epoch.
        builder.HasKey(c => c.JobId);
        builder
            .HasOne<TrainingJob>()
            .WithOne()
            .HasForeignKey<TrainingCheckpointRow>(c => c.JobId)
            .OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class TrainingMetricConfiguration : IEntityTypeConfiguration<TrainingMetric>
{
    public void Configure(EntityTypeBuilder<TrainingMetric> builder)
    {
        builder.ToTable("training_metrics");
        // One row per job and epoch: a re-run job cannot duplicate metrics.
        builder.HasKey(m => new { m.JobId, m.Epoch });
    }
}

internal sealed class TrainedModelConfiguration : IEntityTypeConfiguration<TrainedModel>
{
    public void Configure(EntityTypeBuilder<TrainedModel> builder)
    {
        builder.ToTable("models");
        builder.Property(m => m.Tenant).HasMaxLength(100);
        builder.Property(m => m.Backbone).HasMaxLength(100);
        builder.HasIndex(m => m.JobId).IsUnique();
        builder.HasIndex(m => m.CreatedAt);
        builder
            .Property(m => m.Preprocessing)
            .HasColumnName("preprocessing")
            .HasColumnType("jsonb")
            .HasConversion(JsonColumn.Preprocessing(), JsonColumn.Comparer<PreprocessingSpec>());
        builder
            .Property(m => m.Head)
            .HasColumnType("jsonb")
            .HasConversion(
                JsonColumn.Converter<HeadSpec, StoredHeadDocument>(d => d.ToSpec(), h => h.ToDocument()),
                JsonColumn.Comparer<HeadSpec>()
            );
        builder
            .Property(m => m.Calibration)
            .HasColumnType("jsonb")
            .HasConversion(
                JsonColumn.NullableConverter<Calibration, CalibrationDocument>(
                    d => d.ToCalibration(),
                    c => c.ToDocument()
                ),
                JsonColumn.Comparer<Calibration>()
            );
        builder
            .Property(m => m.Novelty)
            .HasColumnType("jsonb")
            .HasConversion(
                JsonColumn.NullableConverter<NoveltySettings, NoveltyDocument>(
                    d => d.ToSettings(),
                    n => n.ToDocument()
                ),
                JsonColumn.Comparer<NoveltySettings>()
            );
        builder
            .HasOne<TrainingJob>()
            .WithOne()
            .HasForeignKey<TrainedModel>(m => m.JobId)
            .OnDelete(DeleteBehavior.Restrict);
        builder.Property(m => m.Name).HasMaxLength(ModelNames.MaxLength);
        // Names and versions are per tenant.
        builder
            .HasIndex(m => new
            {
                m.Tenant,
                m.Name,
                m.Version,
            })
            .IsUnique();
        builder.HasMany(m => m.Aliases).WithOne().HasForeignKey(a => a.ModelId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class EvaluatedImageConfiguration : IEntityTypeConfiguration<EvaluatedImageRow>
{
    public void Configure(EntityTypeBuilder<EvaluatedImageRow> builder)
    {
        builder.ToTable("evaluated_images");
        builder.HasKey(e => new { e.JobId, e.ImageId });
        builder.Property(e => e.Label).HasMaxLength(200);
        builder.Property(e => e.Predicted).HasMaxLength(200);
        // Listed worst first, filtered by true and predicted label.
        builder.HasIndex(e => new { e.JobId, e.Loss }).IsDescending(false, true);
        builder.HasOne<TrainingJob>().WithMany().HasForeignKey(e => e.JobId).OnDelete(DeleteBehavior.Cascade);
        builder.HasOne<DatasetImage>().WithMany().HasForeignKey(e => e.ImageId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class ModelAliasConfiguration : IEntityTypeConfiguration<ModelAlias>
{
    public void Configure(EntityTypeBuilder<ModelAlias> builder)
    {
        builder.ToTable("model_aliases");
        // An alias names one version of a name at a time; moving it replaces the row.
        builder.HasKey(a => new
        {
            a.Tenant,
            a.Name,
            a.Alias,
        });
        builder.Property(a => a.Tenant).HasMaxLength(100);
        builder.Property(a => a.Name).HasMaxLength(ModelNames.MaxLength);
        builder.Property(a => a.Alias).HasMaxLength(ModelNames.MaxLength);
    }
}

internal sealed class RegisteredBackboneConfiguration : IEntityTypeConfiguration<RegisteredBackbone>
{
    public void Configure(EntityTypeBuilder<RegisteredBackbone> builder)
    {
        builder.ToTable("backbones");
        builder.HasKey(b => b.Id);
        builder.Property(b => b.Id).HasMaxLength(100);
        builder.Property(b => b.Architecture).HasMaxLength(50);
        builder.Property(b => b.Source).HasMaxLength(500);
        builder
            .Property(b => b.Preprocessing)
            .HasColumnType("jsonb")
            .HasConversion(JsonColumn.Preprocessing(), JsonColumn.Comparer<PreprocessingSpec>());
        builder
            .HasOne<BackboneWeights>()
            .WithMany()
            .HasForeignKey(b => b.WeightsSha256)
            .OnDelete(DeleteBehavior.Restrict);
        builder.HasIndex(b => b.WeightsSha256);
    }
}

internal sealed class BackboneWeightsConfiguration : IEntityTypeConfiguration<BackboneWeights>
{
    public void Configure(EntityTypeBuilder<BackboneWeights> builder)
    {
        builder.ToTable("backbone_weights");
        builder.HasKey(w => w.Sha256);
    }
}

internal sealed class ApiKeyConfiguration : IEntityTypeConfiguration<ApiKey>
{
    public void Configure(EntityTypeBuilder<ApiKey> builder)
    {
        builder.ToTable("api_keys");
        builder.HasIndex(k => k.Sha256).IsUnique();
        builder.Property(k => k.Name).HasMaxLength(200);
        builder.Property(k => k.Tenant).HasMaxLength(100);
        builder.Property(k => k.Prefix).HasMaxLength(20);
        builder.Property(k => k.Scope).HasConversion<string>().HasMaxLength(20);
    }
}

internal sealed class IdempotencyRecordConfiguration : IEntityTypeConfiguration<IdempotencyRecord>
{
    public void Configure(EntityTypeBuilder<IdempotencyRecord> builder)
    {
        builder.ToTable("idempotency_records");
        builder.HasKey(r => new { r.Tenant, r.Key });
        builder.Property(r => r.Tenant).HasMaxLength(100);
        builder.Property(r => r.Key).HasMaxLength(IdempotencyRecord.MaxKeyLength);
        builder.Property(r => r.ContentType).HasMaxLength(200);
        builder.Property(r => r.Location).HasMaxLength(2000);
        builder.HasIndex(r => r.CreatedAt);
    }
}

internal sealed class WebhookConfiguration : IEntityTypeConfiguration<Webhook>
{
    public void Configure(EntityTypeBuilder<Webhook> builder)
    {
        builder.ToTable("webhooks");
        builder.Property(w => w.Tenant).HasMaxLength(100);
        builder.Property(w => w.Url).HasMaxLength(Webhook.MaxUrlLength);
        builder.Property(w => w.Description).HasMaxLength(Webhook.MaxDescriptionLength);
        builder.HasIndex(w => w.Tenant);
    }
}

internal sealed class WebhookDeliveryConfiguration : IEntityTypeConfiguration<WebhookDelivery>
{
    public void Configure(EntityTypeBuilder<WebhookDelivery> builder)
    {
        builder.ToTable("webhook_deliveries");
        builder.Property(d => d.EventType).HasMaxLength(100);
        builder.Property(d => d.State).HasConversion<string>().HasMaxLength(20);
        builder.Property(d => d.Payload).HasColumnType("text");
        builder
            .Property(d => d.Attempts)
            .HasColumnType("jsonb")
            .HasConversion(
                JsonColumn.Converter<List<DeliveryAttemptDocument>, List<DeliveryAttemptDocument>>(a => a, a => a),
                JsonColumn.Comparer<List<DeliveryAttemptDocument>>()
            );
        // Listed newest first per webhook; the sweep finds overdue Pending ones.
        builder.HasIndex(d => new { d.WebhookId, d.CreatedAt }).IsDescending(false, true);
        builder.HasIndex(d => new { d.State, d.NextAttemptAt });
        builder.HasOne<Webhook>().WithMany().HasForeignKey(d => d.WebhookId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class BatchPredictionConfiguration : IEntityTypeConfiguration<BatchPrediction>
{
    public void Configure(EntityTypeBuilder<BatchPrediction> builder)
    {
        builder.ToTable("batch_predictions");
        builder.Property(b => b.Tenant).HasMaxLength(100);
        builder.Property(b => b.Status).HasConversion<string>().HasMaxLength(20);
        builder.Property(b => b.Split).HasConversion<string>().HasMaxLength(20);
        builder.Property(b => b.HangfireJobId).HasMaxLength(100);
        builder.Property(b => b.ArchiveName).HasMaxLength(255);
        builder.OwnsMany(b => b.Rejected, r => r.ToJson("rejected"));
        builder.HasIndex(b => new { b.ModelId, b.CreatedAt });
        // Scoring reads the model and the data set: neither goes while a batch refers to it.
        builder.HasOne<TrainedModel>().WithMany().HasForeignKey(b => b.ModelId).OnDelete(DeleteBehavior.Cascade);
        builder.HasOne<Dataset>().WithMany().HasForeignKey(b => b.DatasetId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class BatchPredictionImageConfiguration : IEntityTypeConfiguration<BatchPredictionImage>
{
    public void Configure(EntityTypeBuilder<BatchPredictionImage> builder)
    {
        builder.ToTable("batch_prediction_images");
        builder.Property(i => i.FileName).HasMaxLength(1024);
        builder.HasIndex(i => new { i.BatchId, i.Position }).IsUnique();
        builder.HasOne<BatchPrediction>().WithMany().HasForeignKey(i => i.BatchId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class BatchPredictionResultConfiguration : IEntityTypeConfiguration<BatchPredictionResult>
{
    public void Configure(EntityTypeBuilder<BatchPredictionResult> builder)
    {
        builder.ToTable("batch_prediction_results");
        builder.HasKey(r => new { r.BatchId, r.Position });
        builder.Property(r => r.FileName).HasMaxLength(1024);
        builder.Property(r => r.Label).HasMaxLength(200);
        builder.Property(r => r.Split).HasConversion<string>().HasMaxLength(20);
        builder
            .Property(r => r.Predictions)
            .HasColumnType("jsonb")
            .HasConversion(
                JsonColumn.Converter<List<LabelProbabilityDocument>, List<LabelProbabilityDocument>>(p => p, p => p),
                JsonColumn.Comparer<List<LabelProbabilityDocument>>()
            );
        builder.HasOne<BatchPrediction>().WithMany().HasForeignKey(r => r.BatchId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class DataProtectionKeyConfiguration : IEntityTypeConfiguration<DataProtectionKey>
{
    public void Configure(EntityTypeBuilder<DataProtectionKey> builder) => builder.ToTable("data_protection_keys");
}

internal sealed class ImageFeaturesConfiguration : IEntityTypeConfiguration<ImageFeatures>
{
    public void Configure(EntityTypeBuilder<ImageFeatures> builder)
    {
        builder.ToTable("image_features");
        builder.HasKey(f => new { f.BackboneId, f.Sha256 });
        builder.Property(f => f.BackboneId).HasMaxLength(100);
    }
}

/// <summary>
/// Stores an immutable record of the training core as one jsonb column through its stored document shape
/// (<see cref="DocumentMapping"/>), enums by name.
/// </summary>
internal static class JsonColumn
{
    private static readonly JsonSerializerOptions Options = new() { Converters = { new JsonStringEnumConverter() } };

    public static ValueConverter<T, string> Converter<T, TDocument>(Func<TDocument, T> read, Func<T, TDocument> write)
        where T : class =>
        new(
            value => JsonSerializer.Serialize(write(value), Options),
            json => read(JsonSerializer.Deserialize<TDocument>(json, Options)!)
        );

    /// <summary>For optional columns (EF never hands a null to a converter; this only states the type).</summary>
    public static ValueConverter<T?, string> NullableConverter<T, TDocument>(
        Func<TDocument, T> read,
        Func<T, TDocument> write
    )
        where T : class =>
        new(
            value => JsonSerializer.Serialize(write(value!), Options),
            json => read(JsonSerializer.Deserialize<TDocument>(json, Options)!)
        );

    public static ValueConverter<PreprocessingSpec, string> Preprocessing() =>
        Converter<PreprocessingSpec, PreprocessingDocument>(d => d.ToSpec(), s => s.ToDocument());

    /// <summary>Records compare by value, so EF sees a replaced record as a change and an equal one as none.</summary>
    public static ValueComparer<T> Comparer<T>()
        where T : class => new((a, b) => Equals(a, b), value => value.GetHashCode(), value => value);
}
