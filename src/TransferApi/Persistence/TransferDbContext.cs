using Microsoft.EntityFrameworkCore;

namespace TransferApi.Persistence;

public sealed class TransferDbContext(DbContextOptions<TransferDbContext> options) : DbContext(options)
{
    public DbSet<Dataset> Datasets => Set<Dataset>();
    public DbSet<DatasetImage> DatasetImages => Set<DatasetImage>();
    public DbSet<TrainingJob> TrainingJobs => Set<TrainingJob>();
    public DbSet<TrainingMetric> TrainingMetrics => Set<TrainingMetric>();
    public DbSet<TrainingCheckpointRow> TrainingCheckpoints => Set<TrainingCheckpointRow>();
    public DbSet<TrainedModel> Models => Set<TrainedModel>();
    public DbSet<ModelAlias> ModelAliases => Set<ModelAlias>();
    public DbSet<ImageFeatures> ImageFeatures => Set<ImageFeatures>();
    public DbSet<RegisteredBackbone> Backbones => Set<RegisteredBackbone>();
    public DbSet<BackboneWeights> BackboneWeights => Set<BackboneWeights>();
    public DbSet<ApiKey> ApiKeys => Set<ApiKey>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(TransferDbContext).Assembly);
}
