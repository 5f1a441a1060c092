using Microsoft.AspNetCore.DataProtection.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore;

namespace TransferApi.Persistence;

public sealed class TransferDbContext(DbContextOptions<TransferDbContext> options)
    : DbContext(options),
        IDataProtectionKeyContext
{
    public DbSet<Dataset> Datasets => Set<Dataset>();
    public DbSet<DatasetImage> DatasetImages => Set<DatasetImage>();
    public DbSet<DatasetHealthRow> DatasetHealth => Set<DatasetHealthRow>();
    public DbSet<TrainingJob> TrainingJobs => Set<TrainingJob>();
    public DbSet<TrainingMetric> TrainingMetrics => Set<TrainingMetric>();
    public DbSet<TrainingCheckpointRow> TrainingCheckpoints => Set<TrainingCheckpointRow>();
    public DbSet<TrainedModel> Models => Set<TrainedModel>();
    public DbSet<EvaluatedImageRow> EvaluatedImages => Set<EvaluatedImageRow>();
    public DbSet<ModelAlias> ModelAliases => Set<ModelAlias>();
    public DbSet<ImageFeatures> ImageFeatures => Set<ImageFeatures>();
    public DbSet<RegisteredBackbone> Backbones => Set<RegisteredBackbone>();
    public DbSet<BackboneWeights> BackboneWeights => Set<BackboneWeights>();
    public DbSet<ApiKey> ApiKeys => Set<ApiKey>();
    public DbSet<IdempotencyRecord> IdempotencyRecords => Set<IdempotencyRecord>();
    public DbSet<Webhook> Webhooks => Set<Webhook>();
    public DbSet<WebhookDelivery> WebhookDeliveries => Set<WebhookDelivery>();
    public DbSet<BatchPrediction> BatchPredictions => Set<BatchPrediction>();
    public DbSet<BatchPredictionImage> BatchPredictionImages => Set<BatchPredictionImage>();
    public DbSet<BatchPredictionResult> BatchPredictionResults => Set<BatchPredictionResult>();

    /// <summary>Data Protection's key ring (each key encrypted with Secrets:KeyEncryptionKey).</summary>
    public DbSet<DataProtectionKey> DataProtectionKeys => Set<DataProtectionKey>();

    /// <summary>
    /// The tenant whose rows this context sees and creates (set per request from the API key), or null for the
    /// workers and maintenance code, which see every tenant.
    /// </summary>
    public string? Tenant { get; set; }

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(TransferDbContext).Assembly);
        // Another tenant's rows do not exist for a request: its ids answer 404 everywhere, lists leave them out.
        modelBuilder.Entity<Dataset>().HasQueryFilter(d => Tenant == null || d.Tenant == Tenant);
        modelBuilder.Entity<TrainingJob>().HasQueryFilter(j => Tenant == null || j.Tenant == Tenant);
        modelBuilder.Entity<TrainedModel>().HasQueryFilter(m => Tenant == null || m.Tenant == Tenant);
        modelBuilder.Entity<ModelAlias>().HasQueryFilter(a => Tenant == null || a.Tenant == Tenant);
        modelBuilder.Entity<Webhook>().HasQueryFilter(w => Tenant == null || w.Tenant == Tenant);
        modelBuilder.Entity<BatchPrediction>().HasQueryFilter(b => Tenant == null || b.Tenant == Tenant);
        modelBuilder
            .Entity<WebhookDelivery>()
            .HasQueryFilter(d => Tenant == null || Set<Webhook>().Any(w => w.Id == d.WebhookId && w.Tenant == Tenant));
        modelBuilder
            .Entity<DatasetImage>()
            .HasQueryFilter(i => Tenant == null || Set<Dataset>().Any(d => d.Id == i.DatasetId && d.Tenant == Tenant));
        modelBuilder
            .Entity<DatasetHealthRow>()
            .HasQueryFilter(h => Tenant == null || Set<Dataset>().Any(d => d.Id == h.DatasetId && d.Tenant == Tenant));
        modelBuilder
            .Entity<TrainingMetric>()
            .HasQueryFilter(m => Tenant == null || Set<TrainingJob>().Any(j => j.Id == m.JobId && j.Tenant == Tenant));
    }

    /// <summary>New tenant-owned rows get this context's tenant unless they name one (the workers copy the
    /// job's).</summary>
    public override Task<int> SaveChangesAsync(
        bool acceptAllChangesOnSuccess,
        CancellationToken cancellationToken = default
    )
    {
        foreach (
            var entry in ChangeTracker
                .Entries<ITenantOwned>()
                .Where(e => e.State == EntityState.Added && string.IsNullOrEmpty(e.Entity.Tenant))
        )
            entry.Entity.Tenant = Tenant
                ?? throw new InvalidOperationException($"A new {entry.Entity.GetType().Name} needs a tenant.");
        return base.SaveChangesAsync(acceptAllChangesOnSuccess, cancellationToken);
    }
}
