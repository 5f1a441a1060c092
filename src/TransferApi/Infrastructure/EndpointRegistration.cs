using Hangfire;
using Hangfire.Dashboard;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using TransferApi.Features.Backbones;
using Microsoft.Extensions.Options;
using TransferApi.Features.Datasets;
using TransferApi.Features.Keys;
using TransferApi.Features.Models;
using TransferApi.Features.Storage;
using TransferApi.Features.TrainingJobs;

namespace TransferApi.Infrastructure;

public static class EndpointRegistration
{
    public static WebApplication MapTransferApi(this WebApplication app)
    {
        var auth = app.Services.GetRequiredService<IOptions<AuthOptions>>().Value;
        if (string.IsNullOrEmpty(auth.BootstrapAdminKey))
        {
            if (!app.Environment.IsDevelopment())
                throw new InvalidOperationException("Auth:BootstrapAdminKey (environment Auth__BootstrapAdminKey) is not set: outside Development the service needs a bootstrap admin key to start.");
            app.Logger.LogWarning("Auth:BootstrapAdminKey is not set: in Development every request without a key acts as an admin of tenant '{Tenant}'", Caller.DefaultTenant);
        }

        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseSwagger();
        app.UseSwaggerUI(o => o.DocumentTitle = "TransferApi");
        // The dashboard shows and deletes every tenant's jobs: admin keys only (X-Api-Key, as everywhere).
        app.UseHangfireDashboard("/hangfire", new DashboardOptions { Authorization = [], AsyncAuthorization = [new AdminKeyDashboardFilter()] });
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseRateLimiter();

        app.MapGet("/", () => Results.Redirect("/swagger")).ExcludeFromDescription().AllowAnonymous();
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false }).AllowAnonymous();
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") }).AllowAnonymous();
        // Created now, so the queue gauges are scraped before any request has used the instruments.
        app.Services.GetRequiredService<Telemetry>();
        app.Services.GetRequiredService<StorageUsage>();
        // Every tenant's numbers: admin keys only, sent as X-Api-Key or as Prometheus's `authorization` bearer credentials.
        app.MapPrometheusScrapingEndpoint("/metrics").RequireAuthorization(Caller.Admin);
        app.MapKeyEndpoints();
        app.MapDatasetEndpoints();
        app.MapTrainingJobEndpoints();
        app.MapModelEndpoints();
        app.MapBackboneEndpoints();
        app.MapStorageEndpoints();
        return app;
    }
}

/// <summary>Lets only requests with an admin X-Api-Key into the Hangfire dashboard.</summary>
internal sealed class AdminKeyDashboardFilter : IDashboardAsyncAuthorizationFilter
{
    public async Task<bool> AuthorizeAsync(DashboardContext context)
    {
        var result = await context.GetHttpContext().AuthenticateAsync(Caller.Scheme);
        return result.Succeeded && result.Principal.IsInRole(Caller.Admin);
    }
}
