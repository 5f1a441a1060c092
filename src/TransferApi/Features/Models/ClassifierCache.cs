using Microsoft.Extensions.Caching.Memory;
using TransferApi.Infrastructure;
using TransferApi.Training.Training;

namespace TransferApi.Features.Models;

/// <summary>
/// Trained models ready to predict, loaded once from their checkpoint and kept while used.
/// A head is kilobytes; the backbone behind it is shared through <see cref="BackboneRegistry"/>.
/// </summary>
public sealed class ClassifierCache(BackboneRegistry backbones) : IDisposable
{
    private readonly MemoryCache cache = new(new MemoryCacheOptions { SizeLimit = 256 });

    public ImageClassifier GetOrLoad(Guid modelId, ModelCheckpoint checkpoint) =>
        cache.GetOrCreate(modelId, entry =>
        {
            entry.Size = 1;
            entry.SlidingExpiration = TimeSpan.FromHours(1);
            // Evicted heads are left to the finalizer: a request may still be using one.
            return new ImageClassifier(backbones.Get(checkpoint.BackboneId), checkpoint);
        })!;

    public bool TryGet(Guid modelId, out ImageClassifier? classifier) => cache.TryGetValue(modelId, out classifier);

    public void Dispose() => cache.Dispose();
}
