using System.Collections.Concurrent;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Training.Backbones;

namespace TransferApi.Services;

/// <summary>An id that names no built-in or registered backbone.</summary>
public sealed class UnknownBackboneException(string id) : Exception($"No backbone is '{id}'.")
{
    public string Id { get; } = id;
}

/// <summary>
/// The backbones of this deployment: the built-in ones and those registered from weight files (stored in
/// PostgreSQL, so every worker sees them). Each loads once per process, on first use, on the inference thread
/// (libtorch work stays off request threads), and is shared by training and prediction.
/// </summary>
public sealed class BackboneRegistry(
    IDbContextFactory<TransferDbContext> dbFactory,
    InferenceThread inference,
    IOptions<WorkerOptions> worker,
    IOptions<BackboneOptions> options,
    IOptions<UploadOptions> uploads,
    ILogger<BackboneRegistry> logger
) : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<Task<Backbone>>> loaded = new(StringComparer.Ordinal);

    /// <summary>Whether a backbone of this id exists: built in, or registered by an operator.</summary>
    public static async Task<bool> ExistsAsync(TransferDbContext db, string id, CancellationToken cancellation) =>
        BackboneCatalog.BuiltIn.Contains(id) || await db.Backbones.AnyAsync(b => b.Id == id, cancellation);

    public async Task<Backbone> GetAsync(string id)
    {
        var entry = loaded.GetOrAdd(id, key => new Lazy<Task<Backbone>>(() => LoadAsync(key)));
        try
        {
            return await entry.Value;
        }
        catch
        {
            // A failed load (unknown id, database down) is not remembered: the next call tries again.
            loaded.TryRemove(KeyValuePair.Create(id, entry));
            throw;
        }
    }

    /// <summary>Releases a deleted backbone if this process loaded it.</summary>
    public async Task ForgetAsync(string id)
    {
        if (loaded.TryRemove(id, out var entry) && entry.IsValueCreated && entry.Value.IsCompletedSuccessfully)
            await inference.RunAsync(() => entry.Value.Result.Dispose());
    }

    private async Task<Backbone> LoadAsync(string id)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        Backbone backbone;
        if (BackboneCatalog.BuiltIn.Contains(id))
        {
            backbone = await inference.RunAsync(() =>
                WithPrecision(
                    BackboneCatalog.LoadBuiltIn(id, worker.Value.BackboneDirectory, uploads.Value.ImageLimits)
                )
            );
        }
        else
        {
            await using var db = await dbFactory.CreateDbContextAsync();
            var row = await db.Backbones.AsNoTracking().FirstOrDefaultAsync(b => b.Id == id)
                ?? throw new UnknownBackboneException(id);
            var weights = await db
                .BackboneWeights.Where(w => w.Sha256 == row.WeightsSha256)
                .Select(w => w.Data)
                .SingleAsync();
            var architecture = BackboneArchitecture.Find(row.Architecture)
                ?? throw new InvalidOperationException(
                    $"Backbone '{id}' names architecture '{row.Architecture}', which this build does not know."
                );
            backbone = await inference.RunAsync(() =>
                WithPrecision(
                    BackboneCatalog.Load(id, architecture, weights, row.Preprocessing, uploads.Value.ImageLimits)
                )
            );
        }
        logger.LogInformation(
            "Loaded backbone {Backbone} ({Architecture}, {Parameters:N0} parameters) in {Elapsed:N0} ms; it runs in "
                + "{Precision}: {PrecisionReason}",
            id,
            backbone.Architecture.Name,
            backbone.ParameterCount,
            System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds,
            backbone.Precision.Chosen,
            backbone.Precision.Reason
        );
        return backbone;
    }

    /// <summary>Chooses the backbone's precision (Backbones:Precision) before anything else can use it.</summary>
    private Backbone WithPrecision(Backbone backbone)
    {
        try
        {
            backbone.UsePrecision(options.Value.Precision);
            return backbone;
        }
        catch
        {
            backbone.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var entry in loaded.Values.Where(l => l.IsValueCreated && l.Value.IsCompletedSuccessfully))
            entry.Value.Result.Dispose();
    }
}
