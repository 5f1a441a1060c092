using Hangfire;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using TransferApi.Features.Backbones;
using TransferApi.Features.Datasets;
using TransferApi.Features.Models;
using TransferApi.Features.TrainingJobs;

namespace TransferApi.Infrastructure;

public static class EndpointRegistration
{
    public static WebApplication MapTransferApi(this WebApplication app)
    {
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseSwagger();
        app.UseSwaggerUI(o => o.DocumentTitle = "TransferApi");
        app.UseHangfireDashboard("/hangfire");

        app.MapGet("/", () => Results.Redirect("/swagger")).ExcludeFromDescription();
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false });
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") });
        app.MapDatasetEndpoints();
        app.MapTrainingJobEndpoints();
        app.MapModelEndpoints();
        app.MapBackboneEndpoints();
        return app;
    }
}
