using TransferApi.Persistence;

namespace TransferApi.Features.Webhooks;

/// <param name="Url">Where events are POSTed: an absolute http(s) URL on a public address.</param>
/// <param name="Events">
/// The events to send: training-job.succeeded, training-job.failed, training-job.cancelled, dataset.health.ready,
/// batch-prediction.completed, model.alias.moved.
/// </param>
/// <param name="Description">What the receiver is, for whoever reads the list (at most 500 characters).</param>
public sealed record CreateWebhookRequest(string? Url, IReadOnlyList<string>? Events, string? Description);

/// <param name="Id">The webhook's id.</param>
/// <param name="Url">Where events are POSTed.</param>
/// <param name="Events">The events it receives.</param>
/// <param name="Description">What the receiver is.</param>
/// <param name="CreatedAt">When it was created (UTC).</param>
/// <param name="Secret">
/// The signing secret, only in the answer to POST: store it now, it cannot be read again. Deliveries carry
/// `TransferApi-Signature: t=…,v1=…`, v1 being hex HMAC-SHA256 keyed with this secret over "{t}.{body}".
/// </param>
public sealed record WebhookResponse(
    Guid Id,
    string Url,
    IReadOnlyList<string> Events,
    string? Description,
    DateTime CreatedAt,
    string? Secret = null
);

/// <param name="Id">The delivery's id: one event on its way to this webhook.</param>
/// <param name="EventId">The event's id, the `id` of the body; the same in every attempt, so receivers can drop
/// repeats.</param>
/// <param name="Type">The event type.</param>
/// <param name="CreatedAt">When the event happened (UTC).</param>
/// <param name="State">Pending (being tried or waiting for a retry), Succeeded (a 2xx came) or Failed (given
/// up).</param>
/// <param name="NextAttemptAt">When the next attempt is due, while Pending.</param>
/// <param name="Attempts">Every attempt so far, oldest first.</param>
public sealed record WebhookDeliveryResponse(
    Guid Id,
    Guid EventId,
    string Type,
    DateTime CreatedAt,
    DeliveryState State,
    DateTime? NextAttemptAt,
    IReadOnlyList<WebhookAttemptResponse> Attempts
);

/// <param name="At">When it started (UTC).</param>
/// <param name="StatusCode">The receiver's HTTP status; null when no answer came.</param>
/// <param name="Error">Why it failed: the status, a timeout, a refused connection or address.</param>
/// <param name="Milliseconds">How long it took.</param>
/// <param name="Response">The start of the receiver's answer (up to 500 characters).</param>
public sealed record WebhookAttemptResponse(
    DateTime At,
    int? StatusCode,
    string? Error,
    double Milliseconds,
    string? Response
);
