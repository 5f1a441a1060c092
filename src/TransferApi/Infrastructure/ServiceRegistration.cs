using System.Text.Json.Serialization;
using Hangfire;
using Hangfire.PostgreSql;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;
using TransferApi.Features.Models;
using TransferApi.Jobs;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Storage;
using TransferApi.Training;

namespace TransferApi.Infrastructure;

public static class ServiceRegistration
{
    public static string PostgresConnectionString(this IConfiguration configuration) =>
        configuration.GetConnectionString("Postgres") is { Length: > 0 } connection
            ? connection
            : throw new InvalidOperationException("ConnectionStrings:Postgres is not set (environment variable ConnectionStrings__Postgres).");

    public static WebApplicationBuilder AddTransferApi(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        var configuration = builder.Configuration;
        services.AddOptions<ServiceOptions>().Bind(configuration.GetSection(ServiceOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<WorkerOptions>().Bind(configuration.GetSection(WorkerOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<UploadOptions>().Bind(configuration.GetSection(UploadOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<DatasetOptions>().Bind(configuration.GetSection(DatasetOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<ServingOptions>().Bind(configuration.GetSection(ServingOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<QuotaOptions>().Bind(configuration.GetSection(QuotaOptions.Section)).ValidateDataAnnotations().ValidateOnStart();

        var uploads = configuration.GetSection(UploadOptions.Section).Get<UploadOptions>() ?? new UploadOptions();
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = uploads.MaxRequestBytes);
        services.Configure<FormOptions>(f => f.MultipartBodyLengthLimit = uploads.MaxRequestBytes);

        var connectionString = configuration.PostgresConnectionString();
        services.AddDbContextFactory<TransferDbContext>(o => o.UseNpgsql(connectionString));
        // The context endpoints receive sees only the caller's tenant; contexts made with the factory (workers) see all.
        services.AddHttpContextAccessor();
        services.AddScoped<TenantContext>();
        services.AddScoped(sp =>
        {
            var db = sp.GetRequiredService<IDbContextFactory<TransferDbContext>>().CreateDbContext();
            db.Tenant = sp.GetRequiredService<TenantContext>().Tenant;
            return db;
        });

        services.AddOptions<AuthOptions>().Bind(configuration.GetSection(AuthOptions.Section));
        services.AddMemoryCache();
        services.AddAuthentication(Caller.Scheme).AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(Caller.Scheme, null);
        services.AddAuthorizationBuilder()
            // Every endpoint needs a key unless it says otherwise (health checks); scopes nest: admin > train > predict.
            .SetFallbackPolicy(new AuthorizationPolicyBuilder(Caller.Scheme).RequireAuthenticatedUser().Build())
            .AddPolicy(Caller.Predict, p => p.RequireRole(Caller.Predict))
            .AddPolicy(Caller.Train, p => p.RequireRole(Caller.Train))
            .AddPolicy(Caller.Admin, p => p.RequireRole(Caller.Admin));

        services.AddKeyRateLimits(configuration);
        Telemetry.AddTo(builder);

        services.AddSingleton<BackboneRegistry>();
        services.AddSingleton<InferenceThread>();
        services.AddSingleton<ClassifierCache>();
        services.AddSingleton<Predictor>();
        services.AddScoped<DatasetIngestion>();
        services.AddTransient<TrainingJobRunner>();
        services.AddSingleton<CheckpointStore>();
        services.AddSingleton<JobDispatcher>();
        services.AddSingleton<TenantQuotas>();
        services.AddSingleton<StorageUsage>();

        // Routing refuses other content types with a bare 415; say which one and where the accepted ones are listed.
        services.AddProblemDetails(o => o.CustomizeProblemDetails = context =>
        {
            if (context.ProblemDetails.Status == StatusCodes.Status415UnsupportedMediaType && context.ProblemDetails.Detail is null)
                context.ProblemDetails.Detail = $"Content-Type: '{context.HttpContext.Request.ContentType}' is not accepted by {context.HttpContext.Request.Method} {context.HttpContext.Request.Path}; /swagger lists what is.";
        });
        services.AddExceptionHandler<ProblemDetailsExceptionHandler>();
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.Configure<JsonOptions>(o => o.SerializerOptions.Converters.Add(new JsonStringEnumConverter()));

        services.AddEndpointsApiExplorer();
        services.AddSwaggerGen(o =>
        {
            o.SwaggerDoc("v1", new() { Title = "TransferApi", Version = "v1", Description = "Transfer learning as a service: upload labelled images, train a head on a frozen pretrained backbone, predict." });
            o.IncludeXmlComments(Path.Combine(AppContext.BaseDirectory, "TransferApi.xml"));
            o.SupportNonNullableReferenceTypes();
            o.OperationFilter<PredictBodyOperationFilter>();
            // The Authorize button: one X-Api-Key for every call made from Swagger UI.
            o.AddSecurityDefinition(Caller.Scheme, new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.ApiKey, In = ParameterLocation.Header, Name = Caller.Header,
                Description = "An API key (POST /api/keys with an admin key creates one). Scopes: predict < train < admin.",
            });
            o.AddSecurityRequirement(document => new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(Caller.Scheme, document)] = [] });
        });

        services.AddHealthChecks()
            .AddNpgSql(connectionString, name: "postgres", tags: ["ready"])
            .AddCheck<MigrationsHealthCheck>("migrations", tags: ["ready"])
            .AddCheck<HangfireStorageHealthCheck>("hangfire-storage", tags: ["ready"])
            .AddCheck<BackboneHealthCheck>("backbones", tags: ["ready"]);

        builder.AddHangfire(connectionString);
        return builder;
    }

    private static void AddHangfire(this WebApplicationBuilder builder, string connectionString)
    {
        var worker = builder.Configuration.GetSection(WorkerOptions.Section).Get<WorkerOptions>() ?? new WorkerOptions();
        var service = builder.Configuration.GetSection(ServiceOptions.Section).Get<ServiceOptions>() ?? new ServiceOptions();
        var roles = service.Roles;
        builder.Services.AddHangfire(config => config
            .SetDataCompatibilityLevel(CompatibilityLevel.Version_180)
            .UseSimpleAssemblyNameTypeSerializer()
            .UseRecommendedSerializerSettings()
            .UsePostgreSqlStorage(o => o.UseNpgsqlConnection(connectionString), new PostgreSqlStorageOptions
            {
                QueuePollInterval = worker.QueuePollInterval,
                PrepareSchemaIfNecessary = true,
                // Training can outlast any fixed timeout; a live worker keeps extending its claim instead,
                // and a crashed worker's job goes to another worker once the claim lapses.
                UseSlidingInvisibilityTimeout = true,
                InvisibilityTimeout = worker.InvisibilityTimeout,
            }));
        // SIGTERM: Kestrel drains in-flight requests and Hangfire's jobs checkpoint and requeue, both within this.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = service.ShutdownTimeout);
        if (roles.HasFlag(ServiceRoles.Worker))
        {
            builder.Services.AddHostedService<MigrationGate>();
            builder.Services.AddHostedService<JobDispatchService>();
            builder.Services.AddHangfireServer(o =>
            {
                o.Queues = [TrainingJobRunner.Queue];
                o.WorkerCount = worker.ConcurrentJobs;
                o.ShutdownTimeout = service.ShutdownTimeout;
            });
        }
    }

    /// <summary>Sets libtorch's threads before any worker thread exists (threads created later inherit it).</summary>
    public static void ConfigureTorch(this WebApplication app)
    {
        var worker = app.Services.GetRequiredService<IOptions<WorkerOptions>>().Value;
        TorchRuntime.SetThreads(worker.EffectiveTorchThreads);
        app.Logger.LogInformation("libtorch uses {Threads} thread(s) per job, {Jobs} concurrent job(s) on {Cores} core(s)",
            worker.EffectiveTorchThreads, worker.ConcurrentJobs, Environment.ProcessorCount);
        var roles = app.Services.GetRequiredService<IOptions<ServiceOptions>>().Value.Roles;
        if (roles.HasFlag(ServiceRoles.Worker) && worker.MallocMmapThresholdBytes > 0 && NativeMemory.SetMmapThreshold(worker.MallocMmapThresholdBytes))
            app.Logger.LogInformation("glibc mmap threshold fixed at {Bytes:N0} bytes for training's large buffers", worker.MallocMmapThresholdBytes);
    }

    public static async Task MigrateDatabaseAsync(this IServiceProvider services)
    {
        await using var db = await services.GetRequiredService<IDbContextFactory<TransferDbContext>>().CreateDbContextAsync();
        await db.Database.MigrateAsync();
    }
}

/// <summary>Ready only when every EF Core migration has been applied.</summary>
internal sealed class MigrationsHealthCheck(IDbContextFactory<TransferDbContext> dbFactory) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
        var pending = (await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
        return pending.Count == 0 ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy($"{pending.Count} migration(s) pending: {string.Join(", ", pending)}");
    }
}

/// <summary>Ready only when Hangfire's job storage answers (jobs can be queued and fetched).</summary>
internal sealed class HangfireStorageHealthCheck(Hangfire.JobStorage storage) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var statistics = storage.GetMonitoringApi().GetStatistics();
        return Task.FromResult(HealthCheckResult.Healthy($"{statistics.Servers} server(s), {statistics.Enqueued} enqueued, {statistics.Processing} processing"));
    }
}

/// <summary>Ready only when the built-in backbones load: the first check loads them, so the first prediction does not wait for it (registered ones load on first use).</summary>
internal sealed class BackboneHealthCheck(BackboneRegistry backbones) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var loaded = new List<Training.Backbones.Backbone>();
        foreach (var id in Training.Backbones.BackboneCatalog.BuiltIn) loaded.Add(await backbones.GetAsync(id));
        return HealthCheckResult.Healthy(string.Join(", ", loaded.Select(b => $"{b.Id} ({b.ParameterCount:N0} parameters)")));
    }
}
