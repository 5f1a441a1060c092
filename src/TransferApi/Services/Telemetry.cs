using System.Diagnostics;
using System.Diagnostics.Metrics;
using Hangfire;
using Microsoft.EntityFrameworkCore;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using TransferApi.Persistence;

namespace TransferApi.Services;

/// <summary>
/// TransferApi's own OpenTelemetry instruments (meter and activity source "TransferApi"), beside ASP.NET Core's
/// request metrics, the runtime's and Npgsql's. Prometheus scrapes them at /metrics; traces go to an OTLP
/// collector when OTEL_EXPORTER_OTLP_ENDPOINT is set. Tags stay few and bounded (no ids) so series do not grow
/// with data; ids go on spans and in logs.
/// </summary>
public sealed class Telemetry
{
    public const string Name = "TransferApi";

    /// <summary>Spans of training jobs, predictions and uploads (HTTP and database spans come from their
    /// libraries).</summary>
    public static readonly ActivitySource Source = new(Name);

    /// <summary>From the request's images read to their probabilities: decoding, queueing and the forward
    /// pass.</summary>
    public Histogram<double> PredictDuration { get; }

    /// <summary>Images per forward pass of the dynamic batcher.</summary>
    public Histogram<int> PredictBatchSize { get; }

    /// <summary>Images decoded and waiting for a forward pass.</summary>
    public UpDownCounter<long> PredictQueued { get; }

    /// <summary>Images offered to data sets, by outcome: stored or rejected.</summary>
    public Counter<long> ImagesIngested { get; }

    /// <summary>One training run of a job, from start to its end: succeeded, failed, cancelled, or requeued by a
    /// shutdown.</summary>
    public Histogram<double> JobDuration { get; }

    /// <summary>Webhook delivery attempts, by outcome: delivered, retrying, failed (given up).</summary>
    public Counter<long> WebhookAttempts { get; }

    private long checkpointBytesWritten;

    /// <summary>Counts a crash-recovery checkpoint written to PostgreSQL (what the checkpoint interval
    /// bounds).</summary>
    public void CheckpointWritten(long bytes) => Interlocked.Add(ref checkpointBytesWritten, bytes);

    public Telemetry(
        IMeterFactory meters,
        JobStorage storage,
        IDbContextFactory<TransferDbContext> dbFactory,
        ILogger<Telemetry> logger
    )
    {
        var meter = meters.Create(Name);
        PredictDuration = meter.CreateHistogram(
            "transferapi.predict.duration",
            "s",
            "Time to answer a prediction request, from its images read to their probabilities.",
            advice: new InstrumentAdvice<double>
            {
                HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
            }
        );
        PredictBatchSize = meter.CreateHistogram<int>(
            "transferapi.predict.batch.size",
            "{image}",
            "Images per forward pass of the dynamic batcher.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64] }
        );
        PredictQueued = meter.CreateUpDownCounter<long>(
            "transferapi.predict.queue.length",
            "{image}",
            "Decoded images waiting for a forward pass."
        );
        ImagesIngested = meter.CreateCounter<long>(
            "transferapi.dataset.images.ingested",
            "{image}",
            "Images offered to data sets, by outcome (stored, rejected)."
        );
        JobDuration = meter.CreateHistogram(
            "transferapi.training.job.duration",
            "s",
            "Training runs by outcome (succeeded, failed, cancelled, requeued).",
            advice: new InstrumentAdvice<double>
            {
                HistogramBucketBoundaries = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200],
            }
        );
        WebhookAttempts = meter.CreateCounter<long>(
            "transferapi.webhook.attempts",
            "{attempt}",
            "Webhook delivery attempts, by outcome (delivered, retrying, failed)."
        );

        // Observed rather than added to, so it is exposed (at 0) before the first checkpoint and rates over it work.
        meter.CreateObservableCounter(
            "transferapi.training.checkpoint.written",
            () => Interlocked.Read(ref checkpointBytesWritten),
            "By",
            "Bytes of crash-recovery checkpoints written to PostgreSQL by this process."
        );

        // Read from PostgreSQL when scraped: what autoscaling of workers looks at. Queued jobs wait there, not in
        // Hangfire's queue, until a worker is free and it is their tenant's turn (JobDispatcher).
        meter.CreateObservableGauge("transferapi.training.queue.length", () => Observe(logger, () =>
                {
                    using var db = dbFactory.CreateDbContext();
                    return db.TrainingJobs.LongCount(j => j.Status == JobStatus.Queued);
                }), "{job}", "Training jobs waiting for a worker (shared by every replica).");
        meter.CreateObservableGauge(
            "transferapi.training.jobs.running",
            () => Observe(logger, () => storage.GetMonitoringApi().ProcessingCount()),
            "{job}",
            "Training jobs being run by some worker (shared by every replica)."
        );
    }

    private static IEnumerable<Measurement<long>> Observe(ILogger logger, Func<long> read)
    {
        try
        {
            return [new Measurement<long>(read())];
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException or InvalidOperationException)
        {
            // The database is unreachable: no sample beats a wrong one, and /health/ready already says so.
            logger.LogWarning(e, "Reading the training queue for metrics failed");
            return [];
        }
    }

    /// <summary>Registers the SDK: metrics for Prometheus, traces for OTLP when an endpoint is configured.</summary>
    public static void AddTo(WebApplicationBuilder builder)
    {
        builder.Services.AddSingleton<Telemetry>();
        var otel = builder
            .Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("transferapi", serviceInstanceId: Environment.MachineName))
            .WithMetrics(metrics =>
                metrics
                    .AddMeter(
                        Name,
                        "Microsoft.AspNetCore.Hosting",
                        "Microsoft.AspNetCore.Server.Kestrel",
                        "System.Runtime",
                        "Npgsql"
                    )
                    .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0)
            )
            .WithTracing(tracing =>
                tracing
                    .AddSource(Name, "Npgsql")
                    .AddAspNetCoreInstrumentation(o => o.Filter = context => !IsPlumbing(context.Request.Path))
            );
        if (!string.IsNullOrEmpty(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
            otel.UseOtlpExporter();
    }

    /// <summary>Scrapes and probes, which would drown the traces of real work.</summary>
    private static bool IsPlumbing(PathString path) =>
        path.StartsWithSegments("/metrics") || path.StartsWithSegments("/health");

    /// <summary>Starts a span tagged with the job's or data set's ids (null when nobody listens).</summary>
    public static Activity? StartSpan(string name, params (string Key, object? Value)[] tags)
    {
        var activity = Source.StartActivity(name);
        foreach (var (key, value) in tags)
            activity?.SetTag(key, value);
        return activity;
    }
}
