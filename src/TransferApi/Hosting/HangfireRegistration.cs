using Hangfire;
using Hangfire.PostgreSql;
using TransferApi.Jobs;
using TransferApi.Options;

namespace TransferApi.Hosting;

public static class HangfireRegistration
{
    /// <summary>
    /// Hangfire's client and storage in every process; its server, the job dispatcher and the migration gate only
    /// in processes with the Worker role, so an Api process queues jobs but never runs one.
    /// </summary>
    public static void AddHangfire(this WebApplicationBuilder builder, string connectionString)
    {
        var worker = builder.Configuration.GetSection(WorkerOptions.Section).Get<WorkerOptions>()
            ?? new WorkerOptions();
        var service = builder.Configuration.GetSection(ServiceOptions.Section).Get<ServiceOptions>()
            ?? new ServiceOptions();
        builder.Services.AddHangfire(config =>
            config
                .SetDataCompatibilityLevel(CompatibilityLevel.Version_180)
                .UseSimpleAssemblyNameTypeSerializer()
                .UseRecommendedSerializerSettings()
                .UsePostgreSqlStorage(
                    o => o.UseNpgsqlConnection(connectionString),
                    new PostgreSqlStorageOptions
                    {
                        QueuePollInterval = worker.QueuePollInterval,
                        PrepareSchemaIfNecessary = true,
                        // Training can outlast any fixed timeout; a live worker keeps extending its claim instead,
                        // and a crashed worker's job goes to another worker once the claim lapses.
                        UseSlidingInvisibilityTimeout = true,
                        InvisibilityTimeout = worker.InvisibilityTimeout,
                    }
                )
        );
        // SIGTERM: Kestrel drains in-flight requests and Hangfire's jobs checkpoint and requeue, both within this.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = service.ShutdownTimeout);
        if (!service.Roles.HasFlag(ServiceRoles.Worker))
            return;
        builder.Services.AddHostedService<MigrationGate>();
        builder.Services.AddHostedService<JobDispatchService>();
        builder.Services.AddHostedService<HealthSweepService>();
        builder.Services.AddHostedService<WebhookSweepService>();
        builder.Services.AddHostedService<BatchPredictionSweepService>();
        builder.Services.AddHangfireServer(o =>
        {
            o.Queues = [TrainingJobRunner.Queue];
            o.WorkerCount = worker.ConcurrentJobs;
            o.ShutdownTimeout = service.ShutdownTimeout;
        });
        // Health reports take seconds and must not wait behind hours of training: a server of their own, one at a
        // time per process.
        builder.Services.AddHangfireServer(o =>
        {
            o.ServerName = $"{Environment.MachineName}-health";
            o.Queues = [DatasetHealthRunner.Queue];
            o.WorkerCount = 1;
            o.ShutdownTimeout = service.ShutdownTimeout;
        });
        // Batch predictions take the cores like a health report: one at a time per process, beside training.
        builder.Services.AddHangfireServer(o =>
        {
            o.ServerName = $"{Environment.MachineName}-scoring";
            o.Queues = [BatchPredictionRunner.Queue];
            o.WorkerCount = 1;
            o.ShutdownTimeout = service.ShutdownTimeout;
        });
        // Deliveries wait on receivers, not the CPU: several at once, never behind training. Its scheduler moves due
        // retries to the queue, so its polling interval bounds how late a retry is.
        var webhooks = builder.Configuration.GetSection(WebhookOptions.Section).Get<WebhookOptions>()
            ?? new WebhookOptions();
        builder.Services.AddHangfireServer(o =>
        {
            o.ServerName = $"{Environment.MachineName}-webhooks";
            o.Queues = [WebhookDeliveryRunner.Queue];
            o.WorkerCount = webhooks.ConcurrentDeliveries;
            o.SchedulePollingInterval = webhooks.SchedulePollingInterval;
            o.ShutdownTimeout = service.ShutdownTimeout;
        });
    }
}
