using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Http;
using TransferApi.Jobs;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;

namespace TransferApi.Features.Webhooks;

public static class WebhookEndpoints
{
    public static RouteGroupBuilder MapWebhookEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/webhooks").WithTags("Webhooks").RequireAuthorization(Caller.Train);
        group
            .MapPost("/", Create)
            .WithName("CreateWebhook")
            .AcceptsIdempotencyKey()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .WithSummary("Register a receiver of events; the answer holds its signing secret, once")
            .WithDescription(
                "Events of this key's tenant are POSTed to `url` as `{ id, type, createdAt, data }`, signed in "
                    + "`TransferApi-Signature` (docs/integration.md shows how to verify it), and retried with "
                    + "doubling waits for 25 hours until a 2xx answer comes."
            );
        group.MapGet("/", List).WithName("ListWebhooks").WithSummary("List this tenant's webhooks");
        group
            .MapGet("/{id:guid}", Get)
            .WithName("GetWebhook")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("One webhook (without its secret)");
        group
            .MapDelete("/{id:guid}", Delete)
            .WithName("DeleteWebhook")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Delete a webhook; its pending deliveries are dropped");
        group
            .MapPost("/{id:guid}/test", Test)
            .WithName("TestWebhook")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Send a `ping` event now; follow its delivery to see the receiver's answer");
        group
            .MapGet("/{id:guid}/deliveries", Deliveries)
            .WithName("ListWebhookDeliveries")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Deliveries to this webhook, newest first: attempts, status codes, next retry");
        group
            .MapGet("/{id:guid}/deliveries/{deliveryId:guid}", Delivery)
            .WithName("GetWebhookDelivery")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("One delivery with its attempts");
        return group;
    }

    internal static async Task<Results<Created<WebhookResponse>, ValidationProblem, ProblemHttpResult>> Create(
        CreateWebhookRequest request,
        TransferDbContext db,
        SecretProtection secrets,
        IOptions<WebhookOptions> options,
        CancellationToken cancellation
    )
    {
        var errors = new Dictionary<string, string[]>();
        var events = (request.Events ?? []).Select(e => e?.Trim() ?? "").Distinct(StringComparer.Ordinal).ToList();
        if (events.Count == 0)
            errors["events"] = [$"events must name at least one of {string.Join(", ", WebhookEvents.Subscribable)}."];
        else if (events.FirstOrDefault(e => !WebhookEvents.Subscribable.Contains(e)) is { } unknown)
            errors["events"] =
            [
                $"events: '{unknown}' is not an event; choose from {string.Join(", ", WebhookEvents.Subscribable)}.",
            ];
        var description = string.IsNullOrWhiteSpace(request.Description) ? null : request.Description.Trim();
        if (description?.Length > Webhook.MaxDescriptionLength)
            errors["description"] = [$"description must be at most {Webhook.MaxDescriptionLength} characters."];
        if (errors.Count > 0)
            return TypedResults.ValidationProblem(errors);
        var url = request.Url?.Trim();
        if (await WebhookAddresses.ProblemAsync(url, options.Value.AllowPrivateNetworks, cancellation) is { } bad)
            return TypedResults.Problem(
                new HttpValidationProblemDetails(new Dictionary<string, string[]> { ["url"] = [bad] })
                {
                    Status = StatusCodes.Status422UnprocessableEntity,
                    Title = "Webhook URL refused",
                    Detail = bad,
                }
            );
        if (await db.Webhooks.CountAsync(cancellation) >= options.Value.MaxPerTenant)
            return Problems.Conflict(
                "Too many webhooks",
                $"This tenant has {options.Value.MaxPerTenant} webhooks, the most Webhooks:MaxPerTenant allows; "
                    + "delete one first."
            );

        var secret = WebhookSignature.NewSecret();
        var webhook = new Webhook
        {
            Id = Guid.CreateVersion7(),
            Url = url!,
            Events = events,
            Description = description,
            ProtectedSecret = secrets.ProtectWebhookSecret(secret),
            CreatedAt = DateTime.UtcNow,
        };
        db.Webhooks.Add(webhook);
        await db.SaveChangesAsync(cancellation);
        return TypedResults.Created($"/api/webhooks/{webhook.Id}", ToResponse(webhook) with { Secret = secret });
    }

    internal static async Task<Ok<List<WebhookResponse>>> List(TransferDbContext db, CancellationToken cancellation) =>
        TypedResults.Ok(
            (await db.Webhooks.AsNoTracking().OrderBy(w => w.CreatedAt).ToListAsync(cancellation))
                .Select(ToResponse)
                .ToList()
        );

    internal static async Task<Results<Ok<WebhookResponse>, ProblemHttpResult>> Get(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation
    ) =>
        await db.Webhooks.AsNoTracking().FirstOrDefaultAsync(w => w.Id == id, cancellation) is { } webhook
            ? TypedResults.Ok(ToResponse(webhook))
            : Problems.NotFound("webhook", id);

    internal static async Task<Results<NoContent, ProblemHttpResult>> Delete(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation
    ) =>
        await db.Webhooks.Where(w => w.Id == id).ExecuteDeleteAsync(cancellation) > 0
            ? TypedResults.NoContent()
            : Problems.NotFound("webhook", id);

    internal static async Task<Results<Accepted<WebhookDeliveryResponse>, ProblemHttpResult>> Test(
        Guid id,
        TransferDbContext db,
        WebhookPublisher publisher,
        CancellationToken cancellation
    )
    {
        if (await db.Webhooks.AsNoTracking().FirstOrDefaultAsync(w => w.Id == id, cancellation) is not { } webhook)
            return Problems.NotFound("webhook", id);
        var delivery = publisher.AddPing(db, webhook);
        await db.SaveChangesAsync(cancellation);
        publisher.Send(delivery.Id);
        return TypedResults.Accepted($"/api/webhooks/{id}/deliveries/{delivery.Id}", ToResponse(delivery));
    }

    /// <param name="id">The webhook.</param>
    /// <param name="state">Only deliveries in this state (Pending, Succeeded, Failed).</param>
    /// <param name="page">The page, from 1.</param>
    /// <param name="pageSize">Deliveries per page (default 20, at most 200).</param>
    internal static async Task<Results<Ok<Page<WebhookDeliveryResponse>>, ProblemHttpResult>> Deliveries(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation,
        DeliveryState? state = null,
        int? page = null,
        int? pageSize = null
    )
    {
        if (!await db.Webhooks.AnyAsync(w => w.Id == id, cancellation))
            return Problems.NotFound("webhook", id);
        var query = db.WebhookDeliveries.AsNoTracking().Where(d => d.WebhookId == id);
        if (state is { } wanted)
            query = query.Where(d => d.State == wanted);
        var rows = await query
            .OrderByDescending(d => d.CreatedAt)
            .ThenByDescending(d => d.Id)
            .ToPageAsync(page, pageSize, cancellation);
        return TypedResults.Ok(rows.Select(ToResponse));
    }

    internal static async Task<Results<Ok<WebhookDeliveryResponse>, ProblemHttpResult>> Delivery(
        Guid id,
        Guid deliveryId,
        TransferDbContext db,
        CancellationToken cancellation
    ) =>
        await db
            .WebhookDeliveries.AsNoTracking()
            .FirstOrDefaultAsync(d => d.Id == deliveryId && d.WebhookId == id, cancellation)
            is { } delivery
            ? TypedResults.Ok(ToResponse(delivery))
            : Problems.NotFound("webhook delivery", deliveryId, "deliveryId");

    private static WebhookResponse ToResponse(Webhook webhook) =>
        new(webhook.Id, webhook.Url, webhook.Events, webhook.Description, webhook.CreatedAt);

    private static WebhookDeliveryResponse ToResponse(WebhookDelivery delivery) =>
        new(
            delivery.Id,
            delivery.EventId,
            delivery.EventType,
            delivery.CreatedAt,
            delivery.State,
            delivery.NextAttemptAt,
            delivery
                .Attempts.Select(a => new WebhookAttemptResponse(
                    a.At,
                    a.StatusCode,
                    a.Error,
                    a.Milliseconds,
                    a.Response
                ))
                .ToList()
        );
}
