using Microsoft.AspNetCore.Http.HttpResults;
using TransferApi.Services;

namespace TransferApi.Features.Storage;

public static class StorageEndpoints
{
    public static RouteGroupBuilder MapStorageEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/storage").WithTags("Storage").RequireAuthorization(Caller.Admin);
        group
            .MapGet("/", Get)
            .WithName("GetStorage")
            .WithSummary("Where the database's space goes: bytes by table and by tenant (admin)")
            .WithDescription(
                """
                Tables with indexes and TOAST, live and dead rows (dead rows are space a vacuum has not yet made
                reusable); per tenant the images, models, running jobs' checkpoints and cached features, and what the
                storage quota counts. The same figures are Prometheus gauges at /metrics.
                """
            );
        return group;
    }

    internal static async Task<Ok<StorageReportResponse>> Get(StorageUsage usage, CancellationToken cancellation) =>
        TypedResults.Ok((await usage.MeasureAsync(cancellation)).ToResponse());
}
