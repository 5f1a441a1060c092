using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace TransferApi.TestSupport;

/// <summary>
/// A real HTTP receiver on loopback (Kestrel on a free port), as another service would run one: it records every
/// delivery and answers with the statuses it is told to, in turn (then 200), or not at all.
/// </summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    public sealed record Received(DateTimeOffset At, string Body, string? Signature, string? EventId, string? Type)
    {
        public JsonElement Json => JsonDocument.Parse(Body).RootElement;
    }

    private readonly WebApplication app;
    private readonly ConcurrentQueue<int> answers = new();
    private readonly ConcurrentQueue<Received> received = new();
    private readonly SemaphoreSlim arrived = new(0);

    /// <summary>When set, requests get no answer until the receiver stops.</summary>
    public bool Silent { get; set; }

    public string Url { get; private set; } = "";

    private WebhookReceiver(WebApplication app)
    {
        this.app = app;
    }

    public static async Task<WebhookReceiver> StartAsync(params int[] answers)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        // Its own meter names: the service under test (in this process) exports ASP.NET Core's meters by name, and a
        // second host's meters under those names would be counted there, and stop its series when disposed.
        builder.Services.AddSingleton<IMeterFactory, PrivateMeterFactory>();
        var app = builder.Build();
        var receiver = new WebhookReceiver(app);
        foreach (var status in answers)
            receiver.answers.Enqueue(status);
        app.MapPost("/hooks/transferapi", receiver.HandleAsync);
        await app.StartAsync();
        var address = app
            .Services.GetRequiredService<IServer>()
            .Features.Get<IServerAddressesFeature>()!
            .Addresses.First();
        receiver.Url = $"{address}/hooks/transferapi";
        return receiver;
    }

    private async Task HandleAsync(HttpContext context)
    {
        using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
        var body = await reader.ReadToEndAsync();
        received.Enqueue(
            new Received(
                DateTimeOffset.UtcNow,
                body,
                context.Request.Headers["TransferApi-Signature"].FirstOrDefault(),
                context.Request.Headers["TransferApi-Event-Id"].FirstOrDefault(),
                context.Request.Headers["TransferApi-Event-Type"].FirstOrDefault()
            )
        );
        arrived.Release();
        if (Silent)
        {
            try
            {
                await Task.Delay(Timeout.Infinite, context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                return; // the sender gave up
            }
        }
        context.Response.StatusCode = answers.TryDequeue(out var status) ? status : StatusCodes.Status200OK;
        await context.Response.WriteAsync(status >= 400 ? "not now" : "thanks");
    }

    public IReadOnlyList<Received> All => [.. received];

    /// <summary>Waits until <paramref name="count"/> deliveries (in all) matching <paramref name="match"/>
    /// arrived.</summary>
    public async Task<List<Received>> WaitForAsync(int count, Func<Received, bool>? match = null, int seconds = 60)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var matching = received.Where(r => match?.Invoke(r) ?? true).ToList();
            if (matching.Count >= count)
                return matching;
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
                throw new TimeoutException(
                    $"{matching.Count} of {count} deliveries within {seconds} s; got: "
                        + string.Join(", ", received.Select(r => r.Type))
                );
            await arrived.WaitAsync(left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1));
        }
    }

    /// <summary>
    /// A receiver's check, as docs/integration.md shows it: HMAC-SHA256 with the secret over "{t}.{body}", compared in
    /// constant time, and the timestamp recent.
    /// </summary>
    public static bool SignatureIsValid(Received delivery, string secret)
    {
        var parts = delivery.Signature!.Split(',').Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
        var timestamp = long.Parse(parts["t"], System.Globalization.CultureInfo.InvariantCulture);
        var expected = HMACSHA256.HashData(
            Encoding.UTF8.GetBytes(secret),
            Encoding.UTF8.GetBytes($"{timestamp}.{delivery.Body}")
        );
        return Math.Abs(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - timestamp) < 300
            && CryptographicOperations.FixedTimeEquals(expected, Convert.FromHexString(parts["v1"]));
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }

    private sealed class PrivateMeterFactory : IMeterFactory
    {
        private readonly List<Meter> meters = [];

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter($"webhook-receiver.{options.Name}", options.Version);
            lock (meters)
                meters.Add(meter);
            return meter;
        }

        public void Dispose()
        {
            lock (meters)
                meters.ForEach(m => m.Dispose());
        }
    }
}
