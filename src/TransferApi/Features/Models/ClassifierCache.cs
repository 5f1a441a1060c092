using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training.Inference;

namespace TransferApi.Features.Models;

/// <summary>
/// Trained models ready to predict, each with its <see cref="PredictionBatcher"/>, loaded once from their
/// checkpoint and kept within <see cref="ServingOptions.ModelCacheBytes"/> (least recently used go first).
/// A frozen-backbone model is kilobytes; the backbone behind all of them is shared through <see
/// cref="BackboneRegistry"/>.
/// </summary>
public sealed class ClassifierCache : IDisposable
{
    /// <summary>What module objects and a batcher cost beyond the weights, counted per cached model.</summary>
    public const long OverheadBytes = 64 * 1024;

    private readonly MemoryCache cache;
    private readonly BackboneRegistry backbones;
    private readonly ServingOptions options;
    private readonly InferenceThread inference;
    private readonly Telemetry telemetry;

    public ClassifierCache(
        BackboneRegistry backbones,
        IOptions<ServingOptions> options,
        InferenceThread inference,
        Telemetry telemetry
    )
    {
        (this.backbones, this.options, this.inference, this.telemetry) = (
            backbones,
            options.Value,
            inference,
            telemetry
        );
        cache = new MemoryCache(
            new MemoryCacheOptions
            {
                SizeLimit = this.options.ModelCacheBytes,
                CompactionPercentage = 0.25,
                TrackStatistics = true,
            }
        );
    }

    /// <summary>Bytes the cached models take now (as counted against the limit).</summary>
    public long CachedBytes => cache.GetCurrentStatistics()?.CurrentEstimatedSize ?? 0;

    public bool TryGet(Guid modelId, out ServedModel? model) => cache.TryGetValue(modelId, out model);

    public async Task<ServedModel> GetOrLoadAsync(TrainedModel row)
    {
        if (cache.TryGetValue(row.Id, out ServedModel? cached))
            return cached!;
        var backbone = await backbones.GetAsync(row.Backbone);
        return cache.GetOrCreate(row.Id, entry =>
        {
            var model = Load(row, backbone);
            entry.Size = model.Batcher.Classifier.SizeBytes + OverheadBytes;
            // Evicted (or too big to keep): requests already queued are answered, then the model is released.
            entry.RegisterPostEvictionCallback((_, value, _, _) => ((ServedModel)value!).Batcher.Dispose());
            return model;
        })!;
    }

    /// <summary>A model loaded for prediction with its own batcher; outside the cache only for one bigger than the
    /// whole cache.</summary>
    public ServedModel Load(TrainedModel row, Training.Backbones.Backbone backbone) =>
        new(
            row.Id,
            row.Tenant,
            row.Name,
            row.Version,
            new PredictionBatcher(
                new ImageClassifier(backbone, ModelMapping.ToCheckpoint(row)),
                options,
                inference,
                telemetry
            )
        );

    /// <summary>Drops a model (deleted, or replaced).</summary>
    public void Remove(Guid modelId) => cache.Remove(modelId);

    public void Dispose()
    {
        cache.Dispose();
    }
}

/// <summary>A model ready to predict, with the name and version it had when loaded.</summary>
public sealed record ServedModel(Guid Id, string Tenant, string? Name, int? Version, PredictionBatcher Batcher);
