using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training.Imaging;
using TransferApi.Training.Inference;

namespace TransferApi.Features.Models;

public sealed record Prediction(ServedModel Model, IReadOnlyList<ImageScores> Scores, double Milliseconds);

/// <summary>
/// /predict without HTTP: finds the model (cache first), decodes and preprocesses each image on the caller's thread
/// and hands the pixels to the model's <see cref="PredictionBatcher"/>.
/// </summary>
public sealed class Predictor(ClassifierCache cache, BackboneRegistry backbones, Telemetry telemetry)
{
    /// <summary>The model to serve <paramref name="id"/> with, from the cache or loaded from its row; null when no
    /// model has that id.</summary>
    public async Task<ServedModel?> FindAsync(Guid id, TransferDbContext db, CancellationToken cancellation)
    {
        // The cache is shared by all tenants: a cached model answers only its own tenant.
        if (cache.TryGet(id, out var cached) && (db.Tenant is null || cached!.Tenant == db.Tenant))
            return cached;
        var row = await db.Models.AsNoTracking().FirstOrDefaultAsync(m => m.Id == id, cancellation);
        return row is null ? null : await cache.GetOrLoadAsync(row);
    }

    public async Task<Prediction> PredictAsync(
        ServedModel model,
        IReadOnlyList<PredictImage> images,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var started = Stopwatch.GetTimestamp();
        using var span = Telemetry.StartSpan(
            "predict",
            ("transferapi.model.id", model.Id),
            ("transferapi.images", images.Count)
        );
        // Decoded here, on the request's thread, in managed code; libtorch runs only on the inference thread.
        var decoded = new List<float[]>(images.Count);
        foreach (var image in images)
        {
            try
            {
                // Decoding checks the header against the limits first.
                decoded.Add(model.Batcher.Classifier.Decode([image.Bytes]));
            }
            catch (ImageRejectedException e)
            {
                throw e.ExceedsLimits
                    ? new DomainException(
                        ErrorKind.LimitExceeded,
                        "Image too large",
                        $"file: '{image.FileName}' {e.Message}."
                    )
                    : new DomainException(
                        ErrorKind.UnsupportedFormat,
                        "Not a supported image",
                        $"file: '{image.FileName}' {e.Message}."
                    );
            }
        }
        var scores = await EnqueueAsync(model, ImageClassifier.Concat(decoded), images.Count, db, cancellation);
        var elapsed = Stopwatch.GetElapsedTime(started);
        telemetry.PredictDuration.Record(
            elapsed.TotalSeconds,
            new KeyValuePair<string, object?>("transferapi.backbone", model.Batcher.Classifier.Checkpoint.BackboneId)
        );
        return new Prediction(model, scores, elapsed.TotalMilliseconds);
    }

    /// <summary>Through the model's batcher; a batcher retired meanwhile (evicted) is replaced, or bypassed for a model
    /// too big to cache.</summary>
    private async Task<ImageScores[]> EnqueueAsync(
        ServedModel model,
        float[] decoded,
        int count,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        if (model.Batcher.TryEnqueue(decoded, count, out var result))
            return await result.WaitAsync(cancellation);
        var row = await db.Models.AsNoTracking().FirstOrDefaultAsync(m => m.Id == model.Id, cancellation)
            ?? throw new DomainException(ErrorKind.NotFound, "Model not found", $"id: model {model.Id} was deleted.");
        if ((await cache.GetOrLoadAsync(row)).Batcher.TryEnqueue(decoded, count, out result))
            return await result.WaitAsync(cancellation);
        using var uncached = cache.Load(row, await backbones.GetAsync(row.Backbone)).Batcher;
        if (!uncached.TryEnqueue(decoded, count, out result))
            throw new InvalidOperationException("A new batcher refused work.");
        return await result.WaitAsync(cancellation);
    }
}
