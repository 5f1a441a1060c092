using System.ComponentModel.DataAnnotations;

namespace TransferApi.Options;

/// <summary>Section "Webhooks": where deliveries may go and how they are retried.</summary>
public sealed class WebhookOptions
{
    public const string Section = "Webhooks";

    /// <summary>
    /// Let webhook URLs reach loopback, private, link-local and other non-public addresses. Off, so a key holder cannot
    /// make the service call its own network (cloud metadata, databases, admin pages); on only where receivers sit on
    /// the same private network.
    /// </summary>
    public bool AllowPrivateNetworks { get; set; }

    /// <summary>How long one delivery attempt may take, connection and answer included.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:05:00")]
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The wait before the first retry; each later retry waits twice as long, up to
    /// <see cref="MaxRetryDelay"/>.</summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "01:00:00")]
    public TimeSpan FirstRetryDelay { get; set; } = TimeSpan.FromSeconds(30);

    [Range(typeof(TimeSpan), "00:00:00.1", "1.00:00:00")]
    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromHours(1);

    /// <summary>How long after an event its delivery is still retried; then it is Failed.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "7.00:00:00")]
    public TimeSpan RetryFor { get; set; } = TimeSpan.FromHours(25);

    /// <summary>Deliveries one worker process sends at once (they wait on the network, not the CPU).</summary>
    [Range(1, 64)]
    public int ConcurrentDeliveries { get; set; } = 4;

    /// <summary>How often the worker looks for retries that are due; a retry is late by at most this much.</summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "00:05:00")]
    public TimeSpan SchedulePollingInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long finished deliveries stay listed under their webhook.</summary>
    [Range(typeof(TimeSpan), "01:00:00", "90.00:00:00")]
    public TimeSpan DeliveryRetention { get; set; } = TimeSpan.FromDays(7);

    /// <summary>Webhooks one tenant may register.</summary>
    [Range(1, 1000)]
    public int MaxPerTenant { get; set; } = 25;
}

/// <summary>Section "Secrets": the key that encrypts the service's own encryption keys.</summary>
public sealed class SecretsOptions
{
    public const string Section = "Secrets";

    /// <summary>
    /// 32 random bytes, base64 (`head -c 32 /dev/urandom | base64`). Webhook secrets and kept answers are encrypted
    /// with ASP.NET Core Data Protection, whose keys are stored in PostgreSQL encrypted with this one, so a database
    /// dump alone reveals no secret. Every process of a deployment needs the same value; required outside
    /// Development. Losing it makes stored webhook secrets unreadable (delete and re-create the webhooks).
    /// </summary>
    public string? KeyEncryptionKey { get; set; }
}
