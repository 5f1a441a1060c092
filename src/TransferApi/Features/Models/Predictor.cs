using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Services;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Training.Imaging;
using TransferApi.Training.Inference;

namespace TransferApi.Features.Models;

/// <summary>One image of a predict request, named as the client sent it.</summary>
public sealed record PredictImage(string FileName, byte[] Bytes);

/// <summary>Why a predict request cannot be answered: an HTTP status and a detail naming the field or file.</summary>
public sealed class PredictRejectedException(int status, string title, string detail) : Exception(detail)
{
    public int Status { get; } = status;
    public string Title { get; } = title;
}

public sealed record Prediction(ServedModel Model, IReadOnlyList<float[]> Probabilities, double Milliseconds);

/// <summary>
/// /predict without HTTP: reads the images a request carries (multipart <c>file</c> parts or a raw image body)
/// within the limits, finds the model (cache first), preprocesses each image on the request's thread and hands
/// the pixels to the model's <see cref="PredictionBatcher"/>.
/// </summary>
public sealed class Predictor(
    ClassifierCache cache, BackboneRegistry backbones, IOptions<UploadOptions> uploads, IOptions<ServingOptions> serving, Telemetry telemetry)
{
    public async Task<IReadOnlyList<PredictImage>> ReadImagesAsync(HttpRequest request, CancellationToken cancellation)
    {
        var limit = uploads.Value.MaxPredictBytes;
        if (request.HasFormContentType)
        {
            var form = await request.ReadFormAsync(cancellation);
            var files = form.Files.GetFiles("file");
            if (files.Count == 0) throw new PredictRejectedException(400, "No image", "file: the form has no 'file' part; send each image as a part named 'file'.");
            if (files.Count > serving.Value.MaxImagesPerRequest)
                throw new PredictRejectedException(413, "Too many images", $"file: {files.Count} images in one request; the limit is {serving.Value.MaxImagesPerRequest}.");
            var images = new List<PredictImage>(files.Count);
            foreach (var file in files)
            {
                if (file.Length > limit) throw TooLarge(file.FileName, file.Length);
                using var buffer = new MemoryStream((int)file.Length);
                await file.CopyToAsync(buffer, cancellation);
                images.Add(new PredictImage(file.FileName, buffer.ToArray()));
            }
            return images;
        }
        if (request.ContentType?.StartsWith("image/", StringComparison.OrdinalIgnoreCase) == true)
        {
            if (request.ContentLength > limit) throw TooLarge("body", request.ContentLength.Value);
            using var buffer = new MemoryStream();
            await request.Body.CopyToAsync(buffer, cancellation);
            if (buffer.Length > limit) throw TooLarge("body", buffer.Length);
            if (buffer.Length == 0) throw new PredictRejectedException(400, "No image", "body: the request body is empty.");
            return [new PredictImage("body", buffer.ToArray())];
        }
        throw new PredictRejectedException(415, "Unsupported content type",
            $"Content-Type: '{request.ContentType}' is not accepted; send multipart/form-data with 'file' parts or one image as an image/* body.");
    }

    /// <summary>The model to serve <paramref name="id"/> with, from the cache or loaded from its row; null when no model has that id.</summary>
    public async Task<ServedModel?> FindAsync(Guid id, TransferDbContext db, CancellationToken cancellation)
    {
        // The cache is shared by all tenants: a cached model answers only its own tenant.
        if (cache.TryGet(id, out var cached) && (db.Tenant is null || cached!.Tenant == db.Tenant)) return cached;
        var row = await db.Models.AsNoTracking().FirstOrDefaultAsync(m => m.Id == id, cancellation);
        return row is null ? null : await cache.GetOrLoadAsync(row);
    }

    public async Task<Prediction> PredictAsync(ServedModel model, IReadOnlyList<PredictImage> images, TransferDbContext db, CancellationToken cancellation)
    {
        var started = Stopwatch.GetTimestamp();
        using var span = Telemetry.StartSpan("predict", ("transferapi.model.id", model.Id), ("transferapi.images", images.Count));
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
                    ? new PredictRejectedException(413, "Image too large", $"file: '{image.FileName}' {e.Message}.")
                    : new PredictRejectedException(415, "Not a supported image", $"file: '{image.FileName}' {e.Message}.");
            }
        }
        var probabilities = await EnqueueAsync(model, ImageClassifier.Concat(decoded), images.Count, db, cancellation);
        var elapsed = Stopwatch.GetElapsedTime(started);
        telemetry.PredictDuration.Record(elapsed.TotalSeconds, new KeyValuePair<string, object?>("transferapi.backbone", model.Batcher.Classifier.Checkpoint.BackboneId));
        return new Prediction(model, probabilities, elapsed.TotalMilliseconds);
    }

    /// <summary>Through the model's batcher; a batcher retired meanwhile (evicted) is replaced, or bypassed for a model too big to cache.</summary>
    private async Task<float[][]> EnqueueAsync(ServedModel model, float[] decoded, int count, TransferDbContext db, CancellationToken cancellation)
    {
        if (model.Batcher.TryEnqueue(decoded, count, out var result)) return await result.WaitAsync(cancellation);
        var row = await db.Models.AsNoTracking().FirstOrDefaultAsync(m => m.Id == model.Id, cancellation)
            ?? throw new PredictRejectedException(404, "Model not found", $"id: model {model.Id} was deleted.");
        if ((await cache.GetOrLoadAsync(row)).Batcher.TryEnqueue(decoded, count, out result)) return await result.WaitAsync(cancellation);
        using var uncached = cache.Load(row, await backbones.GetAsync(row.Backbone)).Batcher;
        if (!uncached.TryEnqueue(decoded, count, out result)) throw new InvalidOperationException("A new batcher refused work.");
        return await result.WaitAsync(cancellation);
    }

    private PredictRejectedException TooLarge(string name, long bytes) =>
        new(413, "Image too large", $"file: '{name}' is {bytes:N0} bytes; the limit is {uploads.Value.MaxPredictBytes:N0}.");
}
