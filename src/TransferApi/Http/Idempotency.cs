using System.Security.Cryptography;
using System.Text;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;

namespace TransferApi.Http;

/// <summary>Endpoint metadata: a POST that honours an <c>Idempotency-Key</c> header.</summary>
public sealed class AcceptsIdempotencyKeyMetadata;

public static class Idempotency
{
    public const string Header = "Idempotency-Key";
    public const string ReplayedHeader = "Idempotent-Replayed";

    /// <summary>Retries of this POST with the same Idempotency-Key and body answer the first answer again.</summary>
    public static RouteHandlerBuilder AcceptsIdempotencyKey(this RouteHandlerBuilder builder) =>
        builder.WithMetadata(new AcceptsIdempotencyKeyMetadata());
}

/// <summary>
/// Safe retries (Stripe's Idempotency-Key): the first POST with a key runs and its successful answer is stored under
/// the caller's tenant and the key, with a fingerprint of the request; a retry with the same key and the same request
/// within <see cref="IdempotencyOptions.Retention"/> gets that answer again (with <c>Idempotent-Replayed: true</c>)
/// and creates nothing; the same key with another request is a 422. A retry that arrives while the first request
/// still runs waits for its answer. Failed requests are not kept, so their retry runs again.
/// </summary>
public sealed class IdempotencyMiddleware(
    RequestDelegate next,
    IDbContextFactory<TransferDbContext> dbFactory,
    IOptions<IdempotencyOptions> options,
    SecretProtection secrets,
    ILogger<IdempotencyMiddleware> logger
)
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);

    public async Task InvokeAsync(HttpContext context)
    {
        if (
            !HttpMethods.IsPost(context.Request.Method)
            || context.GetEndpoint()?.Metadata.GetMetadata<AcceptsIdempotencyKeyMetadata>() is null
            || !context.Request.Headers.TryGetValue(Idempotency.Header, out var values)
        )
        {
            await next(context);
            return;
        }
        var key = values.ToString();
        if (values.Count != 1 || key.Length is 0 or > IdempotencyRecord.MaxKeyLength)
        {
            await WriteProblemAsync(
                context,
                StatusCodes.Status400BadRequest,
                "Invalid Idempotency-Key",
                $"{Idempotency.Header}: one value of 1 to {IdempotencyRecord.MaxKeyLength} characters, "
                    + $"not {(values.Count != 1 ? $"{values.Count} values" : $"{key.Length} characters")}."
            );
            return;
        }
        var tenant = context.User.Tenant();
        var cancellation = context.RequestAborted;
        await using var db = await dbFactory.CreateDbContextAsync(cancellation);
        var settings = options.Value;
        using var fingerprint = new RequestFingerprint(context.Request);
        byte[]? ownFingerprint = null;
        var deadline = DateTime.UtcNow + settings.WaitForConcurrent;
        // Answers past their retention, and claims whose request never answered (its process died), free their keys.
        var (expired, abandoned) = (DateTime.UtcNow - settings.Retention, DateTime.UtcNow - settings.PendingTimeout);
        await db
            .IdempotencyRecords.Where(r => r.CreatedAt < expired || (r.CompletedAt == null && r.CreatedAt < abandoned))
            .ExecuteDeleteAsync(cancellation);
        while (true)
        {
            var now = DateTime.UtcNow;
            var claimed = await db.Database.ExecuteSqlInterpolatedAsync(
                $"""
                INSERT INTO idempotency_records ("Tenant", "Key", "CreatedAt") VALUES ({tenant}, {key}, {now})
                ON CONFLICT DO NOTHING
                """,
                cancellation
            );
            if (claimed == 1)
            {
                await RunFirstAsync(context, db, tenant, key, fingerprint);
                return;
            }
            var first = await db
                .IdempotencyRecords.AsNoTracking()
                .FirstOrDefaultAsync(r => r.Tenant == tenant && r.Key == key, cancellation);
            if (first is null)
                continue; // the first request failed and gave the key up: this one runs
            if (first.CompletedAt is null)
            {
                if (DateTime.UtcNow >= deadline)
                {
                    await WriteProblemAsync(
                        context,
                        StatusCodes.Status409Conflict,
                        "Request with this Idempotency-Key still running",
                        $"{Idempotency.Header}: a request with this key started at {first.CreatedAt:O} has not "
                            + "answered yet; retry later to get its answer."
                    );
                    return;
                }
                await Task.Delay(PollInterval, cancellation);
                continue;
            }
            ownFingerprint ??= await fingerprint.OfWholeBodyAsync(context.Request.Body, cancellation);
            if (!CryptographicOperations.FixedTimeEquals(ownFingerprint, first.Fingerprint))
            {
                await WriteProblemAsync(
                    context,
                    StatusCodes.Status422UnprocessableEntity,
                    "Idempotency-Key reused with another request",
                    $"{Idempotency.Header}: this key was used at {first.CreatedAt:O} for a request with another "
                        + "route or body; use a new key for a new request."
                );
                return;
            }
            await ReplayAsync(context, first);
            return;
        }
    }

    private async Task RunFirstAsync(
        HttpContext context,
        TransferDbContext db,
        string tenant,
        string key,
        RequestFingerprint fingerprint
    )
    {
        var (requestBody, responseBody) = (context.Request.Body, context.Response.Body);
        var reading = new FingerprintingStream(requestBody, fingerprint);
        using var answer = new MemoryStream();
        context.Request.Body = reading;
        context.Response.Body = answer;
        var kept = false;
        try
        {
            await next(context);
            if (context.Response.StatusCode is >= 200 and < 300)
            {
                await DrainAsync(reading);
                var (status, contentType, location, body) = (
                    context.Response.StatusCode,
                    context.Response.ContentType,
                    context.Response.Headers.Location.ToString() is { Length: > 0 } l ? l : null,
                    answer.ToArray()
                );
                var hash = fingerprint.Finish();
                // Kept even when the client has gone: its retry must find the answer.
                await db
                    .IdempotencyRecords.Where(r => r.Tenant == tenant && r.Key == key)
                    .ExecuteUpdateAsync(
                        s =>
                            s.SetProperty(r => r.CompletedAt, DateTime.UtcNow)
                                .SetProperty(r => r.Fingerprint, hash)
                                .SetProperty(r => r.StatusCode, status)
                                .SetProperty(r => r.ContentType, contentType)
                                .SetProperty(r => r.Location, location)
                                // Encrypted: an answer can hold a secret shown once (a webhook's).
                                .SetProperty(r => r.Body, body.Length > 0 ? secrets.ProtectAnswer(body) : body),
                        CancellationToken.None
                    );
                kept = true;
            }
        }
        finally
        {
            (context.Request.Body, context.Response.Body) = (requestBody, responseBody);
            if (!kept)
                await ForgetAsync(db, tenant, key);
        }
        answer.Position = 0;
        await answer.CopyToAsync(responseBody, context.RequestAborted);
    }

    /// <summary>
    /// Whatever the endpoint left unread belongs to the request too. Not cancelled with the request: a client that
    /// timed out after the object was created is the one whose retry must find the answer.
    /// </summary>
    private static async Task DrainAsync(Stream reading)
    {
        try
        {
            await reading.CopyToAsync(Stream.Null, CancellationToken.None);
        }
        catch (Exception e) when (e is IOException or BadHttpRequestException or OperationCanceledException)
        {
            // The client is gone mid-body; what was read is what the endpoint acted on.
        }
    }

    private async Task ForgetAsync(TransferDbContext db, string tenant, string key)
    {
        try
        {
            await db
                .IdempotencyRecords.Where(r => r.Tenant == tenant && r.Key == key && r.CompletedAt == null)
                .ExecuteDeleteAsync(CancellationToken.None);
        }
        catch (Exception e) when (e is DbUpdateException or Npgsql.NpgsqlException)
        {
            // The request's own error matters more; the claim then lapses with the retention.
            logger.LogWarning(e, "Could not release Idempotency-Key {Key} of tenant {Tenant}", key, tenant);
        }
    }

    private async Task ReplayAsync(HttpContext context, IdempotencyRecord first)
    {
        context.Response.StatusCode = first.StatusCode ?? StatusCodes.Status200OK;
        if (first.ContentType is { } contentType)
            context.Response.ContentType = contentType;
        if (first.Location is { } location)
            context.Response.Headers.Location = location;
        context.Response.Headers[Idempotency.ReplayedHeader] = "true";
        if (first.Body is { Length: > 0 } body)
            await context.Response.Body.WriteAsync(Unprotect(body), context.RequestAborted);
    }

    /// <summary>Data Protection's payload header: a kept answer without it was kept before answers were encrypted
    /// (the hours after an upgrade) and is plain.</summary>
    private static readonly byte[] ProtectedPayloadHeader = [0x09, 0xF0, 0xC9, 0xF0];

    private byte[] Unprotect(byte[] body) =>
        body.AsSpan().StartsWith(ProtectedPayloadHeader) ? secrets.UnprotectAnswer(body) : body;

    private static Task WriteProblemAsync(HttpContext context, int status, string title, string detail) =>
        TypedResults.Problem(detail, statusCode: status, title: title).ExecuteAsync(context);
}

/// <summary>
/// SHA-256 of what makes a request the same request: method, path, query, media type and body. A multipart body's
/// boundary is left out: clients pick a new random one each time they build the same upload.
/// </summary>
internal sealed class RequestFingerprint : IDisposable
{
    private readonly IncrementalHash hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly byte[]? boundary;
    private byte[] carry = [];

    public RequestFingerprint(HttpRequest request)
    {
        var mediaType = "";
        if (MediaTypeHeaderValue.TryParse(request.ContentType, out var media))
        {
            mediaType = media.MediaType.ToString().ToLowerInvariant();
            if (HeaderUtilities.RemoveQuotes(media.Boundary) is { Length: > 0 } b)
                boundary = Encoding.UTF8.GetBytes(b.ToString());
        }
        hash.AppendData(
            Encoding.UTF8.GetBytes($"{request.Method}\n{request.Path}\n{request.QueryString}\n{mediaType}\n")
        );
    }

    public void AppendBody(ReadOnlySpan<byte> data)
    {
        if (boundary is null)
        {
            hash.AppendData(data);
            return;
        }
        // Every whole boundary is dropped; a tail that may be the start of one waits for the next read.
        var combined = new byte[carry.Length + data.Length];
        carry.CopyTo(combined, 0);
        data.CopyTo(combined.AsSpan(carry.Length));
        var start = 0;
        int found;
        while ((found = combined.AsSpan(start).IndexOf(boundary)) >= 0)
        {
            hash.AppendData(combined.AsSpan(start, found));
            start += found + boundary.Length;
        }
        var keep = Math.Min(boundary.Length - 1, combined.Length - start);
        hash.AppendData(combined.AsSpan(start, combined.Length - start - keep));
        carry = combined[^keep..];
    }

    public byte[] Finish()
    {
        hash.AppendData(carry);
        carry = [];
        return hash.GetHashAndReset();
    }

    /// <summary>Reads the whole body (without keeping it) and answers the fingerprint.</summary>
    public async Task<byte[]> OfWholeBodyAsync(Stream body, CancellationToken cancellation)
    {
        var buffer = new byte[81920];
        int read;
        while ((read = await body.ReadAsync(buffer, cancellation)) > 0)
            AppendBody(buffer.AsSpan(0, read));
        return Finish();
    }

    public void Dispose() => hash.Dispose();
}

/// <summary>The request body as the endpoint reads it, fingerprinted on the way.</summary>
internal sealed class FingerprintingStream(Stream inner, RequestFingerprint fingerprint) : Stream
{
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count)
    {
        var read = inner.Read(buffer, offset, count);
        fingerprint.AppendBody(buffer.AsSpan(offset, read));
        return read;
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var read = await inner.ReadAsync(buffer, cancellationToken);
        fingerprint.AppendBody(buffer.Span[..read]);
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush() { }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>Documents the Idempotency-Key header on the POSTs that honour it.</summary>
internal sealed class IdempotencyKeyOperationFilter : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        if (!context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<AcceptsIdempotencyKeyMetadata>().Any())
            return;
        operation.Parameters ??= [];
        operation.Parameters.Add(
            new OpenApiParameter
            {
                Name = Idempotency.Header,
                In = ParameterLocation.Header,
                Required = false,
                Description =
                    "Any unique string (a UUID) of at most 255 characters. A retry with the same key and the same "
                    + "request within 24 hours answers the first answer again (header Idempotent-Replayed: true) "
                    + "and creates nothing; the same key with another request is a 422.",
                Schema = new OpenApiSchema { Type = JsonSchemaType.String, MaxLength = IdempotencyRecord.MaxKeyLength },
            }
        );
    }
}
