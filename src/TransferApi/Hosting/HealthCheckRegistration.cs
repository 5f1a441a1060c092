using TransferApi.Hosting.HealthChecks;

namespace TransferApi.Hosting;

public static class HealthCheckRegistration
{
    /// <summary>Checks tagged "ready" make /health/ready; /health/live runs none.</summary>
    public static void AddHealthChecks(this IServiceCollection services, string connectionString) =>
        services
            .AddHealthChecks()
            .AddNpgSql(connectionString, name: "postgres", tags: ["ready"])
            .AddCheck<MigrationsHealthCheck>("migrations", tags: ["ready"])
            .AddCheck<HangfireStorageHealthCheck>("hangfire-storage", tags: ["ready"])
            .AddCheck<BackboneHealthCheck>("backbones", tags: ["ready"]);
}
