using System.Security.Cryptography;
using System.Text;

namespace TransferApi.Services;

/// <summary>
/// The signature every webhook delivery carries: <c>TransferApi-Signature: t=&lt;unix seconds&gt;,v1=&lt;hex&gt;</c>,
/// where v1 is HMAC-SHA256 keyed with the webhook's secret (its UTF-8 bytes) over <c>"{t}.{body}"</c>. The timestamp
/// lets a receiver refuse replays of old deliveries; each attempt signs anew.
/// </summary>
public static class WebhookSignature
{
    public const string Header = "TransferApi-Signature";
    public const string SecretPrefix = "whsec_";

    /// <summary>A new signing secret: 256 random bits.</summary>
    public static string NewSecret() => SecretPrefix + Base64Url(RandomNumberGenerator.GetBytes(32));

    public static string Sign(string secret, long timestamp, string body)
    {
        var signed = Encoding.UTF8.GetBytes($"{timestamp}.{body}");
        var mac = HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), signed);
        return $"t={timestamp},v1={Convert.ToHexStringLower(mac)}";
    }

    private static string Base64Url(byte[] bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
