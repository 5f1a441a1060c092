using Hangfire;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace TransferApi.Hosting.HealthChecks;

/// <summary>Ready only when Hangfire's job storage answers (jobs can be queued and fetched).</summary>
internal sealed class HangfireStorageHealthCheck(JobStorage storage) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(
        HealthCheckContext context,
        CancellationToken cancellationToken = default
    )
    {
        var statistics = storage.GetMonitoringApi().GetStatistics();
        return Task.FromResult(
            HealthCheckResult.Healthy(
                $"{statistics.Servers} server(s), {statistics.Enqueued} enqueued, {statistics.Processing} processing"
            )
        );
    }
}
