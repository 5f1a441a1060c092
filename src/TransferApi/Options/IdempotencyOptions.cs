using System.ComponentModel.DataAnnotations;

namespace TransferApi.Options;

/// <summary>Section "Idempotency": how long a POST's answer is kept for retries with the same
/// Idempotency-Key.</summary>
public sealed class IdempotencyOptions
{
    public const string Section = "Idempotency";

    /// <summary>How long a key's first answer is replayed; after that the key can be used again.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "30.00:00:00")]
    public TimeSpan Retention { get; set; } = TimeSpan.FromHours(24);

    /// <summary>
    /// How long a request waits for another request with the same key that is still running, before answering 409:
    /// long enough for an upload retried while the first attempt is still being stored.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:30:00")]
    public TimeSpan WaitForConcurrent { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// A first request that has not answered after this long is taken for dead (its process stopped) and its key is
    /// free again. Keep it above the longest upload.
    /// </summary>
    [Range(typeof(TimeSpan), "00:01:00", "1.00:00:00")]
    public TimeSpan PendingTimeout { get; set; } = TimeSpan.FromHours(1);
}
