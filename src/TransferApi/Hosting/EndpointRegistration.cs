using Hangfire;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using TransferApi.Features.Backbones;
using TransferApi.Features.Datasets;
using TransferApi.Features.Keys;
using TransferApi.Features.Models;
using TransferApi.Features.Storage;
using TransferApi.Features.TrainingJobs;
using TransferApi.Features.Webhooks;
using TransferApi.Http;
using TransferApi.Options;
using TransferApi.Services;

namespace TransferApi.Hosting;

public static class EndpointRegistration
{
    /// <summary>
    /// The middleware and every route. A process without the Api role (a worker) serves only its health checks and
    /// /metrics: no /api routes, no Swagger, no dashboard.
    /// </summary>
    public static WebApplication MapTransferApi(this WebApplication app)
    {
        var servesApi = app
            .Services.GetRequiredService<IOptions<ServiceOptions>>()
            .Value.Roles.HasFlag(ServiceRoles.Api);
        CheckBootstrapKey(app);
        WebhookRegistration.CheckKeyEncryptionKey(app);

        app.UseExceptionHandler();
        app.UseStatusCodePages();
        if (servesApi)
        {
            app.UseSwagger();
            app.UseSwaggerUI(o => o.DocumentTitle = "TransferApi");
            // The dashboard shows and deletes every tenant's jobs: admin keys only (X-Api-Key, as everywhere).
            app.UseHangfireDashboard(
                "/hangfire",
                new DashboardOptions { Authorization = [], AsyncAuthorization = [new AdminKeyDashboardFilter()] }
            );
        }
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseRateLimiter();
        app.UseMiddleware<IdempotencyMiddleware>();

        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false }).AllowAnonymous();
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") })
            .AllowAnonymous();
        // Created now, so the queue gauges are scraped before any request has used the instruments.
        app.Services.GetRequiredService<Telemetry>();
        app.Services.GetRequiredService<StorageUsage>();
        // Every tenant's numbers: admin keys only, sent as X-Api-Key or as Prometheus's `authorization` bearer
        // credentials.
        app.MapPrometheusScrapingEndpoint("/metrics").RequireAuthorization(Caller.Admin);
        if (!servesApi)
            return app;

        app.MapGet("/", () => Results.Redirect("/swagger")).ExcludeFromDescription().AllowAnonymous();
        app.MapKeyEndpoints();
        app.MapDatasetEndpoints();
        app.MapTrainingJobEndpoints();
        app.MapModelEndpoints();
        app.MapBackboneEndpoints();
        app.MapStorageEndpoints();
        app.MapWebhookEndpoints();
        return app;
    }

    private static void CheckBootstrapKey(WebApplication app)
    {
        var auth = app.Services.GetRequiredService<IOptions<AuthOptions>>().Value;
        if (!string.IsNullOrEmpty(auth.BootstrapAdminKey))
            return;
        if (!app.Environment.IsDevelopment())
            throw new InvalidOperationException(
                "Auth:BootstrapAdminKey (environment Auth__BootstrapAdminKey) is not "
                    + "set: outside Development the service needs a bootstrap admin key to start."
            );
        app.Logger.LogWarning(
            "Auth:BootstrapAdminKey is not set: in Development every request without a key acts "
                + "as an admin of tenant '{Tenant}'",
            Caller.DefaultTenant
        );
    }
}
