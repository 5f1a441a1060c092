using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using Hangfire;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Persistence.Documents;
using TransferApi.Services;

namespace TransferApi.Jobs;

/// <summary>
/// Sends one attempt of a webhook delivery on the <c>webhooks</c> queue (its own Hangfire server, so deliveries never
/// wait behind training) and schedules the next one when it fails: waits doubling from Webhooks:FirstRetryDelay up to
/// MaxRetryDelay, for Webhooks:RetryFor after the event. Hangfire's own retries are off; this schedule replaces them.
/// </summary>
public sealed class WebhookDeliveryRunner(
    IDbContextFactory<TransferDbContext> dbFactory,
    IHttpClientFactory httpClients,
    SecretProtection secrets,
    IBackgroundJobClient jobs,
    IOptions<WebhookOptions> options,
    Telemetry telemetry,
    ILogger<WebhookDeliveryRunner> logger
)
{
    public const string Queue = "webhooks";
    public const string HttpClientName = "webhooks";
    public const string EventIdHeader = "TransferApi-Event-Id";
    public const string EventTypeHeader = "TransferApi-Event-Type";

    /// <summary>Of a receiver's answer only this much is read (and the start kept for the attempt's record).</summary>
    private const int MaxResponseBytes = 4096;
    private const int KeptResponseChars = 500;

    /// <summary>How early a scheduled attempt may be picked up (Hangfire's whole seconds, workers' clocks).</summary>
    private static readonly TimeSpan ClockSlack = TimeSpan.FromSeconds(2);

    private WebhookOptions Options => options.Value;

    [Queue(Queue)]
    [AutomaticRetry(Attempts = 0)]
    public async Task DeliverAsync(Guid deliveryId, CancellationToken shutdown)
    {
        await using var db = await dbFactory.CreateDbContextAsync(shutdown);
        var due = await db
            .WebhookDeliveries.Where(d => d.Id == deliveryId && d.State == DeliveryState.Pending)
            .Select(d => d.NextAttemptAt)
            .FirstOrDefaultAsync(shutdown);
        // Not due (another copy of this job, or its own scheduled run comes later), or no longer pending.
        if (due is not { } dueAt || dueAt > DateTime.UtcNow + ClockSlack)
            return;
        // Hangfire schedules by whole seconds, so a retry may start up to a second early: it waits for its time.
        if (dueAt - DateTime.UtcNow is { Ticks: > 0 } early)
            await Task.Delay(early, shutdown);
        // Claimed by pushing its due time past this attempt: one runner sends it, however many copies of this job the
        // sweep queued, and an attempt that dies with its process is due again when the claim lapses.
        var claimed = await db
            .WebhookDeliveries.Where(d =>
                d.Id == deliveryId && d.State == DeliveryState.Pending && d.NextAttemptAt == dueAt
            )
            .ExecuteUpdateAsync(
                s => s.SetProperty(d => d.NextAttemptAt, DateTime.UtcNow + Options.Timeout + TimeSpan.FromMinutes(1)),
                shutdown
            );
        if (claimed == 0)
            return;
        var delivery = await db.WebhookDeliveries.FirstAsync(d => d.Id == deliveryId, shutdown);
        var webhook = await db.Webhooks.FirstAsync(w => w.Id == delivery.WebhookId, shutdown);
        using var scope = logger.BeginScope("Webhook {WebhookId} delivery {DeliveryId}", webhook.Id, delivery.Id);

        DeliveryAttemptDocument attempt;
        var secretLost = false;
        try
        {
            attempt = await SendAsync(webhook, delivery, shutdown);
        }
        catch (System.Security.Cryptography.CryptographicException)
        {
            // Retrying cannot help: the key ring that encrypted the secret is not readable with this configuration.
            secretLost = true;
            attempt = new(
                DateTime.UtcNow,
                null,
                "The webhook's signing secret cannot be decrypted (was Secrets:KeyEncryptionKey changed?); nothing "
                    + "was sent. Re-create the webhook.",
                0,
                null
            );
        }
        catch (OperationCanceledException) when (shutdown.IsCancellationRequested)
        {
            // Not an attempt of the receiver's: due again at once, for the next worker.
            await db
                .WebhookDeliveries.Where(d => d.Id == deliveryId)
                .ExecuteUpdateAsync(s => s.SetProperty(d => d.NextAttemptAt, DateTime.UtcNow), CancellationToken.None);
            throw;
        }
        delivery.Attempts = [.. delivery.Attempts, attempt];
        var delay = RetryDelay(delivery.Attempts.Count);
        string outcome;
        if (attempt.StatusCode is >= 200 and < 300)
            (delivery.State, delivery.NextAttemptAt, outcome) = (DeliveryState.Succeeded, null, "delivered");
        else if (!secretLost && DateTime.UtcNow + delay - delivery.CreatedAt <= Options.RetryFor)
            (delivery.NextAttemptAt, outcome) = (DateTime.UtcNow + delay, "retrying");
        else
            (delivery.State, delivery.NextAttemptAt, outcome) = (DeliveryState.Failed, null, "failed");
        await db.SaveChangesAsync(CancellationToken.None);
        telemetry.WebhookAttempts.Add(1, new KeyValuePair<string, object?>("outcome", outcome));
        if (outcome == "retrying")
        {
            jobs.Schedule<WebhookDeliveryRunner>(r => r.DeliverAsync(deliveryId, CancellationToken.None), delay);
            logger.LogWarning(
                "Webhook {Type} event {EventId} to {Url}: attempt {Attempt} failed ({Error}); next in {Delay}",
                delivery.EventType,
                delivery.EventId,
                webhook.Url,
                delivery.Attempts.Count,
                attempt.Error,
                delay
            );
        }
        else
            logger.LogInformation(
                "Webhook {Type} event {EventId} to {Url}: {Outcome} after {Attempts} attempt(s) ({Status})",
                delivery.EventType,
                delivery.EventId,
                webhook.Url,
                outcome,
                delivery.Attempts.Count,
                attempt.StatusCode?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? attempt.Error
            );
    }

    /// <summary>The wait after the <paramref name="attempts"/>-th failed attempt.</summary>
    public TimeSpan RetryDelay(int attempts) =>
        TimeSpan.FromTicks(
            (long)
                Math.Min(
                    Options.FirstRetryDelay.Ticks * Math.Pow(2, Math.Max(0, attempts - 1)),
                    Options.MaxRetryDelay.Ticks
                )
        );

    private async Task<DeliveryAttemptDocument> SendAsync(
        Webhook webhook,
        WebhookDelivery delivery,
        CancellationToken shutdown
    )
    {
        var at = DateTime.UtcNow;
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, webhook.Url)
        {
            Content = new StringContent(delivery.Payload, Encoding.UTF8, "application/json"),
        };
        var secret = secrets.UnprotectWebhookSecret(webhook.ProtectedSecret);
        request.Headers.Add(
            WebhookSignature.Header,
            WebhookSignature.Sign(secret, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), delivery.Payload)
        );
        request.Headers.Add(EventIdHeader, delivery.EventId.ToString());
        request.Headers.Add(EventTypeHeader, delivery.EventType);
        request.Headers.UserAgent.Add(new ProductInfoHeaderValue("TransferApi-Webhooks", "1"));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(shutdown);
        timeout.CancelAfter(Options.Timeout);
        try
        {
            using var response = await httpClients
                .CreateClient(HttpClientName)
                .SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            var answer = await ReadStartAsync(response, timeout.Token);
            var status = (int)response.StatusCode;
            var error =
                response.IsSuccessStatusCode ? null
                : status is >= 300 and < 400 ? $"HTTP {status}: redirects are not followed"
                : $"HTTP {status}";
            return new(at, status, error, clock.Elapsed.TotalMilliseconds, answer);
        }
        catch (OperationCanceledException) when (!shutdown.IsCancellationRequested)
        {
            return new(
                at,
                null,
                $"No answer within {Options.Timeout.TotalSeconds:0.#} s",
                clock.Elapsed.TotalMilliseconds,
                null
            );
        }
        catch (HttpRequestException e)
        {
            return new(at, null, e.InnerException?.Message ?? e.Message, clock.Elapsed.TotalMilliseconds, null);
        }
    }

    /// <summary>The start of the answer: a receiver cannot make a worker read (or store) more than a few
    /// kilobytes.</summary>
    private static async Task<string?> ReadStartAsync(HttpResponseMessage response, CancellationToken cancellation)
    {
        await using var body = await response.Content.ReadAsStreamAsync(cancellation);
        var buffer = new byte[MaxResponseBytes];
        var read = await body.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancellation);
        if (read == 0)
            return null;
        var text = Encoding.UTF8.GetString(buffer, 0, read);
        return text.Length > KeptResponseChars ? text[..KeptResponseChars] : text;
    }
}

/// <summary>
/// Every minute: queues deliveries that are overdue (their queueing was lost to a crash, or their attempt died with
/// its process), and drops finished deliveries older than Webhooks:DeliveryRetention.
/// </summary>
public sealed class WebhookSweepService(
    IDbContextFactory<TransferDbContext> dbFactory,
    WebhookPublisher publisher,
    IOptions<WebhookOptions> options,
    ILogger<WebhookSweepService> logger
) : PeriodicService(logger)
{
    protected override TimeSpan Interval => TimeSpan.FromMinutes(1);
    protected override string Activity => "Sweeping webhook deliveries";

    protected override Task RunOnceAsync(CancellationToken cancellation) => SweepAsync(cancellation);

    public async Task SweepAsync(CancellationToken cancellation)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellation);
        var overdue = DateTime.UtcNow - Interval;
        var lost = await db
            .WebhookDeliveries.Where(d => d.State == DeliveryState.Pending && d.NextAttemptAt < overdue)
            .OrderBy(d => d.NextAttemptAt)
            .Select(d => d.Id)
            .Take(500)
            .ToListAsync(cancellation);
        foreach (var id in lost)
            publisher.Send(id);
        if (lost.Count > 0)
            logger.LogInformation("Queued {Count} overdue webhook deliveries again", lost.Count);
        var expired = DateTime.UtcNow - options.Value.DeliveryRetention;
        await db
            .WebhookDeliveries.Where(d => d.State != DeliveryState.Pending && d.CreatedAt < expired)
            .ExecuteDeleteAsync(cancellation);
    }
}
