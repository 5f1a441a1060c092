namespace TransferApi.Options;

/// <summary>Section "RateLimits": per API key, a token bucket refilled every second.</summary>
public sealed class RateLimitOptions
{
    public const string Section = "RateLimits";

    /// <summary>Predict requests per key and minute (bursts up to that many).</summary>
    public int PredictPerMinute { get; set; } = 6000;

    /// <summary>Uploads (data sets, images, backbone weights) per key and minute.</summary>
    public int UploadsPerMinute { get; set; } = 60;
}
