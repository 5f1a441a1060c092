using System.Security.Cryptography;
using System.Text;
using System.Xml.Linq;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.XmlEncryption;
using Microsoft.Extensions.Options;
using TransferApi.Options;

namespace TransferApi.Services;

/// <summary>
/// Encrypts what the service must read back but a database dump must not reveal (webhook signing secrets, answers
/// kept for Idempotency-Key retries), with ASP.NET Core Data Protection: keys rotate on their own, live in PostgreSQL
/// for every process, and are themselves encrypted with Secrets:KeyEncryptionKey (<see cref="KeyRingEncryptor"/>).
/// </summary>
public sealed class SecretProtection(IDataProtectionProvider provider)
{
    private readonly IDataProtector webhookSecrets = provider.CreateProtector("TransferApi.Webhooks.Secret.v1");
    private readonly IDataProtector keptAnswers = provider.CreateProtector("TransferApi.Idempotency.Answer.v1");

    public string ProtectWebhookSecret(string secret) => webhookSecrets.Protect(secret);

    public string UnprotectWebhookSecret(string protectedSecret) => webhookSecrets.Unprotect(protectedSecret);

    public byte[] ProtectAnswer(byte[] body) => keptAnswers.Protect(body);

    public byte[] UnprotectAnswer(byte[] protectedBody) => keptAnswers.Unprotect(protectedBody);
}

/// <summary>
/// Encrypts each Data Protection key with AES-256-GCM under Secrets:KeyEncryptionKey, which lives outside the
/// database (configuration, a Kubernetes secret). The element names the key's fingerprint, so a process configured
/// with another key fails with a message saying so.
/// </summary>
public sealed class KeyRingEncryptor(byte[] keyEncryptionKey) : IXmlEncryptor
{
    internal const string ElementName = "transferApiEncryptedKey";
    internal const int NonceBytes = 12;
    internal const int TagBytes = 16;

    public EncryptedXmlInfo Encrypt(XElement plaintextElement)
    {
        var plaintext = Encoding.UTF8.GetBytes(plaintextElement.ToString(SaveOptions.DisableFormatting));
        var sealedKey = new byte[NonceBytes + TagBytes + plaintext.Length];
        var (nonce, tag, ciphertext) = KeyRingDecryptor.Split(sealedKey);
        RandomNumberGenerator.Fill(nonce.Span);
        using (var aes = new AesGcm(keyEncryptionKey, TagBytes))
            aes.Encrypt(nonce.Span, plaintext, ciphertext.Span, tag.Span);
        var element = new XElement(
            ElementName,
            new XAttribute("kek", KeyRingDecryptor.Fingerprint(keyEncryptionKey)),
            Convert.ToBase64String(sealedKey)
        );
        return new EncryptedXmlInfo(element, typeof(KeyRingDecryptor));
    }
}

/// <summary>Reverses <see cref="KeyRingEncryptor"/>; Data Protection creates it by type with the host's
/// services.</summary>
public sealed class KeyRingDecryptor(IServiceProvider services) : IXmlDecryptor
{
    public XElement Decrypt(XElement encryptedElement)
    {
        var key = SecretKeys.KeyEncryptionKey(services.GetRequiredService<IOptions<SecretsOptions>>().Value)
            ?? throw new InvalidOperationException(
                "The Data Protection key ring in the database is encrypted, but Secrets:KeyEncryptionKey is not set."
            );
        if ((string?)encryptedElement.Attribute("kek") is { } stored && stored != Fingerprint(key))
            throw new InvalidOperationException(
                $"The Data Protection key ring was encrypted with another Secrets:KeyEncryptionKey (fingerprint "
                    + $"{stored}; this process has {Fingerprint(key)}). Every process needs the same key."
            );
        var sealedKey = Convert.FromBase64String(encryptedElement.Value);
        var (nonce, tag, ciphertext) = Split(sealedKey);
        var plaintext = new byte[ciphertext.Length];
        using (var aes = new AesGcm(key, KeyRingEncryptor.TagBytes))
            aes.Decrypt(nonce.Span, ciphertext.Span, tag.Span, plaintext);
        return XElement.Parse(Encoding.UTF8.GetString(plaintext));
    }

    internal static (Memory<byte> Nonce, Memory<byte> Tag, Memory<byte> Ciphertext) Split(byte[] sealedKey) =>
        (
            sealedKey.AsMemory(0, KeyRingEncryptor.NonceBytes),
            sealedKey.AsMemory(KeyRingEncryptor.NonceBytes, KeyRingEncryptor.TagBytes),
            sealedKey.AsMemory(KeyRingEncryptor.NonceBytes + KeyRingEncryptor.TagBytes)
        );

    /// <summary>Names a key without revealing it: the first bytes of its SHA-256.</summary>
    internal static string Fingerprint(byte[] key) => Convert.ToHexStringLower(SHA256.HashData(key))[..16];
}

public static class SecretKeys
{
    public const int KeyEncryptionKeyBytes = 32;

    /// <summary>The configured key, or null when none is; throws on a value that is not 32 bytes of base64.</summary>
    public static byte[]? KeyEncryptionKey(SecretsOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.KeyEncryptionKey))
            return null;
        var bytes = new byte[KeyEncryptionKeyBytes + 1];
        if (
            !Convert.TryFromBase64String(options.KeyEncryptionKey.Trim(), bytes, out var written)
            || written != KeyEncryptionKeyBytes
        )
            throw new InvalidOperationException(
                $"Secrets:KeyEncryptionKey must be {KeyEncryptionKeyBytes} bytes in base64 (head -c 32 /dev/urandom | "
                    + "base64)."
            );
        return bytes[..KeyEncryptionKeyBytes];
    }
}
