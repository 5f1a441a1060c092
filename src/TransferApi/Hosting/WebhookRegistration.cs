using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.Extensions.Options;
using TransferApi.Jobs;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;

namespace TransferApi.Hosting;

public static class WebhookRegistration
{
    /// <summary>
    /// Data Protection with its key ring in PostgreSQL (one ring for every process of a deployment), each key encrypted
    /// with Secrets:KeyEncryptionKey; without that key (Development only, see <see cref="CheckKeyEncryptionKey"/>)
    /// the ring is stored unencrypted and Data Protection warns so.
    /// </summary>
    public static void AddSecretProtection(this WebApplicationBuilder builder)
    {
        var secrets = builder.Configuration.GetSection(SecretsOptions.Section).Get<SecretsOptions>()
            ?? new SecretsOptions();
        builder.Services.AddOptions<SecretsOptions>().Bind(builder.Configuration.GetSection(SecretsOptions.Section));
        builder
            .Services.AddDataProtection()
            .SetApplicationName("TransferApi")
            .PersistKeysToDbContext<TransferDbContext>();
        if (SecretKeys.KeyEncryptionKey(secrets) is { } key)
            builder.Services.Configure<KeyManagementOptions>(o => o.XmlEncryptor = new KeyRingEncryptor(key));
        builder.Services.AddSingleton<SecretProtection>();
    }

    /// <summary>Deliveries: the publisher, the runner, and an HTTP client that connects only where the address policy
    /// allows, follows no redirect and uses no proxy (a proxy would connect on its behalf).</summary>
    public static void AddWebhooks(this IServiceCollection services)
    {
        services.AddSingleton<WebhookPublisher>();
        services.AddTransient<WebhookDeliveryRunner>();
        services
            .AddHttpClient(WebhookDeliveryRunner.HttpClientName, c => c.Timeout = Timeout.InfiniteTimeSpan)
            .ConfigurePrimaryHttpMessageHandler(sp =>
            {
                var options = sp.GetRequiredService<IOptions<WebhookOptions>>().Value;
                return new SocketsHttpHandler
                {
                    AllowAutoRedirect = false,
                    UseProxy = false,
                    UseCookies = false,
                    ConnectTimeout = options.Timeout,
                    MaxResponseHeadersLength = 16,
                    PooledConnectionLifetime = TimeSpan.FromMinutes(2),
                    ConnectCallback = (context, cancellation) =>
                        WebhookAddresses.ConnectAsync(context.DnsEndPoint, options.AllowPrivateNetworks, cancellation),
                };
            });
    }

    /// <summary>Outside Development the service does not start without the key that encrypts the key
    /// ring.</summary>
    public static void CheckKeyEncryptionKey(WebApplication app)
    {
        if (SecretKeys.KeyEncryptionKey(app.Services.GetRequiredService<IOptions<SecretsOptions>>().Value) is not null)
            return;
        if (!app.Environment.IsDevelopment())
            throw new InvalidOperationException(
                "Secrets:KeyEncryptionKey (environment Secrets__KeyEncryptionKey) is not set: outside Development the "
                    + "service needs it to encrypt webhook secrets (32 random bytes in base64: head -c 32 /dev/urandom "
                    + "| base64)."
            );
        app.Logger.LogWarning(
            "Secrets:KeyEncryptionKey is not set: in Development the Data Protection key ring is stored unencrypted"
        );
    }
}
