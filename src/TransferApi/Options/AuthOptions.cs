namespace TransferApi.Options;

/// <summary>Section "Auth".</summary>
public sealed class AuthOptions
{
    public const string Section = "Auth";

    /// <summary>
    /// A key with the admin scope that is never stored (environment Auth__BootstrapAdminKey): the first key, which
    /// creates the others. Required outside Development; in Development without it, requests need no key.
    /// </summary>
    public string? BootstrapAdminKey { get; set; }

    /// <summary>How long a looked-up key is trusted before the database is asked again (a revocation takes effect
    /// within it).</summary>
    public TimeSpan KeyCacheDuration { get; set; } = TimeSpan.FromSeconds(10);
}
