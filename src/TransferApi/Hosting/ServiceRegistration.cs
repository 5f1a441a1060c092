using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.EntityFrameworkCore;
using TransferApi.Features.Backbones;
using TransferApi.Features.Datasets;
using TransferApi.Features.Models;
using TransferApi.Jobs;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;

namespace TransferApi.Hosting;

/// <summary>The composition root: every service the host registers, in the order a reader needs them.</summary>
public static class ServiceRegistration
{
    public static WebApplicationBuilder AddTransferApi(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        var configuration = builder.Configuration;
        builder.AddTransferApiOptions();
        var connectionString = configuration.PostgresConnectionString();
        services.AddDatabase(connectionString);
        services.AddApiKeyAuthentication(configuration);
        services.AddKeyRateLimits(configuration);
        Telemetry.AddTo(builder);

        services.AddSingleton<BackboneRegistry>();
        services.AddSingleton<InferenceThread>();
        services.AddSingleton<ClassifierCache>();
        services.AddSingleton<Predictor>();
        services.AddScoped<DatasetIngestion>();
        services.AddScoped<BackboneImport>();
        services.AddSingleton<BatchPredictionUpload>();
        services.AddTransient<TrainingJobRunner>();
        services.AddTransient<DatasetHealthRunner>();
        services.AddTransient<BatchPredictionRunner>();
        services.AddSingleton<DatasetHealthScheduler>();
        services.AddSingleton<CheckpointStore>();
        services.AddSingleton<JobDispatcher>();
        services.AddSingleton<TenantQuotas>();
        services.AddSingleton<StorageUsage>();
        builder.AddSecretProtection();
        services.AddWebhooks();

        services.AddHttpProblemDetails();
        services.Configure<JsonOptions>(o => o.SerializerOptions.Converters.Add(new JsonStringEnumConverter()));
        services.AddOpenApiDocument();
        services.AddHealthChecks(connectionString);
        builder.AddHangfire(connectionString);
        return builder;
    }

    private static void AddTransferApiOptions(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        var configuration = builder.Configuration;
        services.AddValidatedOptions<ServiceOptions>(configuration, ServiceOptions.Section);
        services.AddValidatedOptions<WorkerOptions>(configuration, WorkerOptions.Section);
        services.AddValidatedOptions<BackboneOptions>(configuration, BackboneOptions.Section);
        services.AddValidatedOptions<UploadOptions>(configuration, UploadOptions.Section);
        services.AddValidatedOptions<DatasetOptions>(configuration, DatasetOptions.Section);
        services.AddValidatedOptions<ServingOptions>(configuration, ServingOptions.Section);
        services.AddValidatedOptions<QuotaOptions>(configuration, QuotaOptions.Section);
        services.AddValidatedOptions<IdempotencyOptions>(configuration, IdempotencyOptions.Section);
        services.AddValidatedOptions<WebhookOptions>(configuration, WebhookOptions.Section);

        var uploads = configuration.GetSection(UploadOptions.Section).Get<UploadOptions>() ?? new UploadOptions();
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = uploads.MaxRequestBytes);
        services.Configure<FormOptions>(f => f.MultipartBodyLengthLimit = uploads.MaxRequestBytes);
    }

    private static void AddValidatedOptions<T>(
        this IServiceCollection services,
        ConfigurationManager configuration,
        string section
    )
        where T : class =>
        services.AddOptions<T>().Bind(configuration.GetSection(section)).ValidateDataAnnotations().ValidateOnStart();

    private static void AddDatabase(this IServiceCollection services, string connectionString)
    {
        services.AddDbContextFactory<TransferDbContext>(o => o.UseNpgsql(connectionString));
        // The context endpoints receive sees only the caller's tenant; contexts made with the factory (workers)
        // see all.
        services.AddHttpContextAccessor();
        services.AddScoped<TenantContext>();
        services.AddScoped(sp =>
        {
            var db = sp.GetRequiredService<IDbContextFactory<TransferDbContext>>().CreateDbContext();
            db.Tenant = sp.GetRequiredService<TenantContext>().Tenant;
            return db;
        });
    }
}
