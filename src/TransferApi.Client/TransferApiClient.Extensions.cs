using System.IO.Compression;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace TransferApi.Client;

/// <summary>One image's answer from /predict.</summary>
/// <param name="ModelId">The model that answered.</param>
/// <param name="ModelName">Its name, if it has one.</param>
/// <param name="ModelVersion">Its version under that name.</param>
/// <param name="Predictions">Labels with calibrated probabilities, most probable first.</param>
/// <param name="InferenceMilliseconds">The service's time for the image.</param>
/// <param name="Novelty">How unlike the model's training images it is (null when the model has no novelty).</param>
/// <param name="Unknown">True when novelty is above the model's threshold: probably none of its classes.</param>
public sealed record ImagePrediction(
    Guid ModelId,
    string? ModelName,
    int? ModelVersion,
    IReadOnlyList<PredictionResponse> Predictions,
    double InferenceMilliseconds,
    double? Novelty,
    bool? Unknown
);

/// <summary>One line of a batch prediction's results: what /predict answers for that stored image.</summary>
/// <param name="ImageId">The data set image (null for an image of an uploaded zip).</param>
/// <param name="FileName">Its path in the uploaded archive.</param>
/// <param name="Label">Its label in the data set (null when unlabeled, or uploaded to be scored).</param>
/// <param name="Split">Train, Validation, Test or Unlabeled (null for an image of an uploaded zip).</param>
/// <param name="Predictions">Labels with calibrated probabilities, most probable first.</param>
/// <param name="Novelty">How unlike the model's training images it is.</param>
/// <param name="Unknown">True when novelty is above the model's threshold.</param>
public sealed record BatchPredictionLine(
    Guid? ImageId,
    string FileName,
    string? Label,
    string? Split,
    IReadOnlyList<PredictionResponse> Predictions,
    double? Novelty,
    bool? Unknown
);

/// <summary>
/// The hand-written part of the client, where generation is awkward: uploads from a folder or zip, waiting for jobs
/// with progress from their event stream, predicting a stream, reading batch results line by line.
/// </summary>
public partial class TransferApiClient : IDisposable
{
    private bool ownsHttpClient;

    /// <summary>The service's JSON (camelCase) for the hand-written records; generated types name their
    /// fields.</summary>
    private static readonly JsonSerializerOptions WebJson = new(JsonSerializerDefaults.Web);

    /// <summary>Releases the HTTP client when <see cref="Create"/> made it.</summary>
    public void Dispose()
    {
        if (ownsHttpClient)
            _httpClient.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>A client for the service that sends an API key with every request.</summary>
    /// <param name="baseAddress">Where the service is, e.g. https://transferapi.example.com/.</param>
    /// <param name="apiKey">The X-Api-Key (tak_…).</param>
    /// <param name="handler">The HTTP handler (default: a new SocketsHttpHandler); tests pass an in-memory one.</param>
    public static TransferApiClient Create(Uri baseAddress, string apiKey, HttpMessageHandler? handler = null)
    {
        var http = new HttpClient(handler ?? new SocketsHttpHandler(), disposeHandler: handler is null)
        {
            BaseAddress = baseAddress,
            // Uploads and long event streams outlast HttpClient's 100 s default; pass cancellation tokens instead.
            Timeout = Timeout.InfiniteTimeSpan,
        };
        http.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
        return new TransferApiClient(http) { ownsHttpClient = true };
    }

    /// <summary>Uploads a folder laid out as the service expects (<c>label/image.jpg</c>, optionally under
    /// <c>train/</c>, <c>val/</c>, <c>test/</c>, and <c>unlabeled/</c>) as a new data set.</summary>
    public async Task<DatasetResponse> UploadFolderAsync(
        string name,
        string folder,
        string? idempotencyKey = null,
        CancellationToken cancellationToken = default
    )
    {
        using var zip = new MemoryStream();
        ZipFile.CreateFromDirectory(folder, zip, CompressionLevel.NoCompression, includeBaseDirectory: false);
        zip.Position = 0;
        return await UploadZipAsync(name, zip, idempotencyKey, cancellationToken);
    }

    /// <summary>Uploads a zip of images as a new data set; the data set's split settings stay the service's
    /// defaults. (The generated UploadDatasetAsync insists on every optional form field.)</summary>
    public Task<DatasetResponse> UploadZipAsync(
        string name,
        Stream zip,
        string? idempotencyKey = null,
        CancellationToken cancellationToken = default
    ) =>
        PostZipAsync<DatasetResponse>(
            "api/datasets",
            zip,
            "dataset.zip",
            [("name", name)],
            idempotencyKey,
            cancellationToken
        );

    /// <summary>Scores every image of a folder (any layout) with a model, in a worker: wait for the batch with
    /// <see cref="WaitForBatchPredictionAsync"/>, then read it with <see cref="ReadBatchPredictionResultsAsync"/>
    /// (each line names its image by its path in the folder).</summary>
    /// <param name="model">A model id, name, name@version or name@alias.</param>
    /// <param name="folder">The folder of images.</param>
    /// <param name="topK">Labels per image in the results (default: the service's, 5).</param>
    /// <param name="idempotencyKey">Makes a retried call create one batch.</param>
    /// <param name="cancellationToken">Cancels the upload.</param>
    public async Task<BatchPredictionResponse> ScoreFolderAsync(
        string model,
        string folder,
        int? topK = null,
        string? idempotencyKey = null,
        CancellationToken cancellationToken = default
    )
    {
        using var zip = new MemoryStream();
        ZipFile.CreateFromDirectory(folder, zip, CompressionLevel.NoCompression, includeBaseDirectory: false);
        zip.Position = 0;
        return await ScoreZipAsync(
            model,
            zip,
            Path.GetFileName(folder) + ".zip",
            topK,
            idempotencyKey,
            cancellationToken
        );
    }

    /// <summary>Scores every image of a zip with a model, in a worker (see <see cref="ScoreFolderAsync"/>).</summary>
    /// <param name="model">A model id, name, name@version or name@alias.</param>
    /// <param name="zip">The zip of images.</param>
    /// <param name="fileName">The zip's name, kept as the batch's archiveName.</param>
    /// <param name="topK">Labels per image in the results (default: the service's, 5).</param>
    /// <param name="idempotencyKey">Makes a retried call create one batch.</param>
    /// <param name="cancellationToken">Cancels the upload.</param>
    public Task<BatchPredictionResponse> ScoreZipAsync(
        string model,
        Stream zip,
        string fileName = "images.zip",
        int? topK = null,
        string? idempotencyKey = null,
        CancellationToken cancellationToken = default
    ) =>
        PostZipAsync<BatchPredictionResponse>(
            $"api/models/{Uri.EscapeDataString(model)}/batch-predictions",
            zip,
            fileName,
            topK is { } k ? [("topK", k.ToString(System.Globalization.CultureInfo.InvariantCulture))] : [],
            idempotencyKey,
            cancellationToken
        );

    private async Task<T> PostZipAsync<T>(
        string route,
        Stream zip,
        string fileName,
        (string Field, string Value)[] fields,
        string? idempotencyKey,
        CancellationToken cancellationToken
    )
    {
        var file = new StreamContent(zip);
        file.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        var form = new MultipartFormDataContent();
        foreach (var (field, value) in fields)
            form.Add(new StringContent(value), field);
        form.Add(file, "file", fileName);
        using var request = new HttpRequestMessage(HttpMethod.Post, route) { Content = form };
        if (idempotencyKey is not null)
            request.Headers.Add("Idempotency-Key", idempotencyKey);
        using var response = await _httpClient.SendAsync(request, cancellationToken);
        await ThrowUnlessSuccessAsync(response, cancellationToken);
        return (await response.Content.ReadFromJsonAsync<T>(WebJson, cancellationToken))!;
    }

    /// <summary>
    /// Waits until the job ends, reporting its progress from the job's event stream (Server-Sent Events) as it
    /// comes; returns the ended job. A dropped stream is resumed by polling.
    /// </summary>
    public async Task<TrainingJobResponse> WaitForJobAsync(
        Guid jobId,
        IProgress<ProgressResponse>? progress = null,
        CancellationToken cancellationToken = default
    )
    {
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"api/training-jobs/{jobId}/events");
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
            using var response = await _httpClient.SendAsync(
                request,
                HttpCompletionOption.ResponseHeadersRead,
                cancellationToken
            );
            if (response.IsSuccessStatusCode)
            {
                await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
                await foreach (var item in SseParser.Create(stream).EnumerateAsync(cancellationToken))
                {
                    if (item.EventType == "progress")
                        progress?.Report(JsonSerializer.Deserialize<ProgressResponse>(item.Data, WebJson)!);
                    else if (item.EventType == "status")
                        break;
                }
            }
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            // The stream broke: the polling below finds the end.
        }
        while (true)
        {
            var job = await GetTrainingJobAsync(jobId, cancellationToken);
            if (job.Status is not (JobStatus.Queued or JobStatus.Running))
                return job;
            progress?.Report(job.Progress!);
            await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
        }
    }

    /// <summary>Classifies one image (JPEG, PNG, BMP, GIF or WebP) read from a stream.</summary>
    /// <param name="model">A model id, name, name@version or name@alias.</param>
    /// <param name="image">The encoded image.</param>
    /// <param name="fileName">Its name, for error messages.</param>
    /// <param name="topK">How many labels to answer.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    public async Task<ImagePrediction> PredictAsync(
        string model,
        Stream image,
        string fileName = "image",
        int topK = 5,
        CancellationToken cancellationToken = default
    )
    {
        using var content = new MultipartFormDataContent { { new StreamContent(image), "file", fileName } };
        using var response = await _httpClient.PostAsync(
            $"api/models/{Uri.EscapeDataString(model)}/predict?topK={topK}",
            content,
            cancellationToken
        );
        await ThrowUnlessSuccessAsync(response, cancellationToken);
        return (await response.Content.ReadFromJsonAsync<ImagePrediction>(WebJson, cancellationToken))!;
    }

    /// <summary>Waits until a batch prediction ends (polling once a second) and returns it.</summary>
    public async Task<BatchPredictionResponse> WaitForBatchPredictionAsync(
        string model,
        Guid batchId,
        IProgress<BatchPredictionResponse>? progress = null,
        CancellationToken cancellationToken = default
    )
    {
        while (true)
        {
            var batch = await GetBatchPredictionAsync(model, batchId, cancellationToken);
            progress?.Report(batch);
            if (batch.Status is not (JobStatus.Queued or JobStatus.Running))
                return batch;
            await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
        }
    }

    /// <summary>A succeeded batch prediction's results, one image at a time as they stream in.</summary>
    public async IAsyncEnumerable<BatchPredictionLine> ReadBatchPredictionResultsAsync(
        string model,
        Guid batchId,
        [EnumeratorCancellation] CancellationToken cancellationToken = default
    )
    {
        using var response = await _httpClient.GetAsync(
            $"api/models/{Uri.EscapeDataString(model)}/batch-predictions/{batchId}/results",
            HttpCompletionOption.ResponseHeadersRead,
            cancellationToken
        );
        await ThrowUnlessSuccessAsync(response, cancellationToken);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
            if (line.Length > 0)
                yield return JsonSerializer.Deserialize<BatchPredictionLine>(line, WebJson)!;
    }

    private static async Task ThrowUnlessSuccessAsync(HttpResponseMessage response, CancellationToken cancellation)
    {
        if (response.IsSuccessStatusCode)
            return;
        var body = await response.Content.ReadAsStringAsync(cancellation);
        throw new TransferApiException(
            $"TransferApi answered {(int)response.StatusCode}: {body}",
            (int)response.StatusCode,
            body,
            response.Headers.ToDictionary(h => h.Key, h => h.Value),
            null
        );
    }
}

/// <summary>Checks the signature of a webhook delivery, as a receiver must before trusting it.</summary>
public static class WebhookSignature
{
    /// <summary>The header that carries the signature.</summary>
    public const string Header = "TransferApi-Signature";

    /// <summary>True when the signature is HMAC-SHA256 with the secret over "{t}.{body}" and t is recent.</summary>
    /// <param name="secret">The webhook's secret (whsec_…), from the answer that created it.</param>
    /// <param name="signatureHeader">The TransferApi-Signature header: t=…,v1=….</param>
    /// <param name="body">The request body exactly as received.</param>
    /// <param name="tolerance">How far t may be from now (default 5 minutes), against replays.</param>
    public static bool Verify(string secret, string signatureHeader, string body, TimeSpan? tolerance = null)
    {
        long? timestamp = null;
        var signatures = new List<byte[]>();
        foreach (var part in signatureHeader.Split(','))
        {
            var pair = part.Split('=', 2);
            if (pair.Length != 2)
                continue;
            if (pair[0].Trim() == "t" && long.TryParse(pair[1], out var t))
                timestamp = t;
            else if (pair[0].Trim() == "v1" && pair[1].Length == 64)
                try
                {
                    signatures.Add(Convert.FromHexString(pair[1]));
                }
                catch (FormatException) { }
        }
        if (
            timestamp is not { } sentAt
            || Math.Abs(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - sentAt)
                > (tolerance ?? TimeSpan.FromMinutes(5)).TotalSeconds
        )
            return false;
        var expected = HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes($"{sentAt}.{body}"));
        return signatures.Any(s => CryptographicOperations.FixedTimeEquals(s, expected));
    }
}
