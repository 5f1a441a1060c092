using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Training.Backbones;

namespace TransferApi.Infrastructure;

/// <summary>Loads each pretrained backbone once per process and shares it between training and prediction.</summary>
public sealed class BackboneRegistry(IOptions<WorkerOptions> worker, IOptions<UploadOptions> uploads, ILogger<BackboneRegistry> logger) : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<Backbone>> loaded = new(StringComparer.Ordinal);

    public Backbone Get(string id) => loaded.GetOrAdd(id, key => new Lazy<Backbone>(() =>
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var backbone = BackboneCatalog.Load(key, worker.Value.BackboneDirectory, uploads.Value.ImageLimits);
        logger.LogInformation("Loaded backbone {Backbone} ({Parameters:N0} parameters) in {Elapsed:N0} ms",
            key, backbone.ParameterCount, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return backbone;
    })).Value;

    public void Dispose()
    {
        foreach (var backbone in loaded.Values.Where(l => l.IsValueCreated)) backbone.Value.Dispose();
    }
}
