using System.Text.Json;
using System.Text.Json.Serialization;
using Hangfire;
using Microsoft.EntityFrameworkCore;
using TransferApi.Persistence;
using TransferApi.Persistence.Documents;

namespace TransferApi.Jobs;

/// <summary>An event for webhooks: its type (wire name) and the object that becomes the body's <c>data</c>.</summary>
public sealed record WebhookEvent(string Type, object Data);

/// <summary>The events webhooks subscribe to: their wire names and data, in one place.</summary>
public static class WebhookEvents
{
    public const string TrainingJobSucceeded = "training-job.succeeded";
    public const string TrainingJobFailed = "training-job.failed";
    public const string TrainingJobCancelled = "training-job.cancelled";
    public const string DatasetHealthReady = "dataset.health.ready";
    public const string BatchPredictionCompleted = "batch-prediction.completed";
    public const string ModelAliasMoved = "model.alias.moved";

    /// <summary>Sent only by POST /api/webhooks/{id}/test, to every webhook whatever it subscribed to.</summary>
    public const string Ping = "ping";

    public static readonly IReadOnlyList<string> Subscribable =
    [
        TrainingJobSucceeded,
        TrainingJobFailed,
        TrainingJobCancelled,
        DatasetHealthReady,
        BatchPredictionCompleted,
        ModelAliasMoved,
    ];

    public static WebhookEvent TrainingJobEnded(
        Guid jobId,
        Guid datasetId,
        JobStatus status,
        Guid? modelId,
        string? error,
        DateTime finishedAt
    ) =>
        new(
            status switch
            {
                JobStatus.Succeeded => TrainingJobSucceeded,
                JobStatus.Failed => TrainingJobFailed,
                JobStatus.Cancelled => TrainingJobCancelled,
                _ => throw new ArgumentOutOfRangeException(nameof(status), status, "A job that has not ended."),
            },
            new
            {
                jobId,
                datasetId,
                status,
                modelId,
                error,
                finishedAt,
                links = new
                {
                    job = $"/api/training-jobs/{jobId}",
                    model = modelId is null ? null : $"/api/models/{modelId}",
                },
            }
        );

    public static WebhookEvent HealthReady(Guid datasetId, long datasetVersion, HealthCountsDocument counts) =>
        new(
            DatasetHealthReady,
            new
            {
                datasetId,
                datasetVersion,
                counts.Backbone,
                counts.NearDuplicateGroups,
                counts.LeakingGroups,
                counts.LabelIssues,
                counts.Outliers,
                counts.Warnings,
                links = new { health = $"/api/datasets/{datasetId}/health" },
            }
        );

    /// <summary>batch-prediction.completed: the batch ended; its status says how.</summary>
    public static WebhookEvent BatchPredictionEnded(
        Guid batchId,
        Guid modelId,
        Guid? datasetId,
        JobStatus status,
        int images,
        string? error
    ) =>
        new(
            BatchPredictionCompleted,
            new
            {
                batchId,
                modelId,
                datasetId,
                status,
                images,
                error,
                links = new
                {
                    batch = $"/api/models/{modelId}/batch-predictions/{batchId}",
                    results = $"/api/models/{modelId}/batch-predictions/{batchId}/results",
                },
            }
        );

    public static WebhookEvent AliasMoved(string name, string alias, Guid modelId, int? version) =>
        new(
            ModelAliasMoved,
            new
            {
                name,
                alias,
                modelId,
                version,
                links = new { model = $"/api/models/{modelId}" },
            }
        );
}

/// <summary>
/// Turns an event into one delivery per subscribed webhook of its tenant (a transactional outbox): the rows are added
/// to the caller's context and committed with the change they announce, and <c>Send</c> queues them after the
/// commit. A queueing lost to a crash in between is caught by <see cref="WebhookSweepService"/>.
/// </summary>
public sealed class WebhookPublisher(IBackgroundJobClient jobs, ILogger<WebhookPublisher> logger)
{
    private static readonly JsonSerializerOptions PayloadJson = new(JsonSerializerDefaults.Web)
    {
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>The deliveries of an event (none when no webhook of the tenant subscribed), saved by the caller's
    /// SaveChanges.</summary>
    public async Task<IReadOnlyList<WebhookDelivery>> AddAsync(
        TransferDbContext db,
        string tenant,
        WebhookEvent change,
        CancellationToken cancellation
    )
    {
        var type = change.Type;
        var webhooks = await db
            .Webhooks.IgnoreQueryFilters()
            .Where(w => w.Tenant == tenant && w.Events.Contains(type))
            .Select(w => w.Id)
            .ToListAsync(cancellation);
        return AddEvent(db, webhooks, type, change.Data);
    }

    /// <summary>A ping to one webhook, saved by the caller's SaveChanges.</summary>
    public WebhookDelivery AddPing(TransferDbContext db, Webhook webhook) =>
        AddEvent(db, [webhook.Id], WebhookEvents.Ping, new { webhookId = webhook.Id })[0];

    /// <summary>Queues deliveries whose rows are committed.</summary>
    public void Send(IEnumerable<WebhookDelivery> deliveries)
    {
        foreach (var delivery in deliveries)
            Send(delivery.Id);
    }

    public void Send(Guid deliveryId)
    {
        try
        {
            jobs.Enqueue<WebhookDeliveryRunner>(r => r.DeliverAsync(deliveryId, CancellationToken.None));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The row is committed and Pending: the sweep queues it within minutes.
            logger.LogWarning(e, "Could not queue webhook delivery {DeliveryId}; the sweep will", deliveryId);
        }
    }

    /// <summary>Adds, commits and queues an event's deliveries, for callers without a transaction of their
    /// own.</summary>
    public async Task PublishAsync(
        TransferDbContext db,
        string tenant,
        WebhookEvent change,
        CancellationToken cancellation
    )
    {
        var deliveries = await AddAsync(db, tenant, change, cancellation);
        if (deliveries.Count == 0)
            return;
        await db.SaveChangesAsync(cancellation);
        Send(deliveries);
    }

    private static List<WebhookDelivery> AddEvent(TransferDbContext db, List<Guid> webhooks, string type, object data)
    {
        if (webhooks.Count == 0)
            return [];
        var (eventId, createdAt) = (Guid.CreateVersion7(), DateTime.UtcNow);
        // One body for every webhook and every attempt: receivers drop repeats by its id.
        var payload = JsonSerializer.Serialize(
            new
            {
                id = eventId,
                type,
                createdAt,
                data,
            },
            PayloadJson
        );
        var deliveries = webhooks
            .Select(webhookId => new WebhookDelivery
            {
                Id = Guid.CreateVersion7(),
                WebhookId = webhookId,
                EventId = eventId,
                EventType = type,
                CreatedAt = createdAt,
                Payload = payload,
                State = DeliveryState.Pending,
                NextAttemptAt = createdAt,
            })
            .ToList();
        db.WebhookDeliveries.AddRange(deliveries);
        return deliveries;
    }
}
