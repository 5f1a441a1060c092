using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Persistence;

namespace TransferApi.Services;

/// <summary>The caller a key stands for.</summary>
public static class Caller
{
    public const string Scheme = "ApiKey";
    public const string Header = "X-Api-Key";
    public const string TenantClaim = "tenant";
    public const string DefaultTenant = "default";

    /// <summary>Policies by the least scope they need: admin ⊃ train ⊃ predict.</summary>
    public const string Predict = "predict",
        Train = "train",
        Admin = "admin";

    public static string Tenant(this ClaimsPrincipal user) => user.FindFirstValue(TenantClaim) ?? DefaultTenant;

    public static byte[] Hash(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key));

    /// <summary>A new secret: "tak_" and 256 random bits, base64url.</summary>
    public static string NewKey() => "tak_" + Base64Url(RandomNumberGenerator.GetBytes(32));

    private static string Base64Url(byte[] bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}

/// <summary>
/// The tenant of the request being served (its API key's), or null outside requests (training workers,
/// maintenance), where code sees every tenant.
/// </summary>
public sealed class TenantContext(IHttpContextAccessor accessor)
{
    public string? Tenant =>
        accessor.HttpContext?.User is { Identity.IsAuthenticated: true } user ? user.Tenant() : null;

    /// <summary>A context from <paramref name="factory"/> that sees only this tenant's rows (all rows outside
    /// requests).</summary>
    public async Task<TransferDbContext> CreateDbContextAsync(
        IDbContextFactory<TransferDbContext> factory,
        CancellationToken cancellation
    )
    {
        var db = await factory.CreateDbContextAsync(cancellation);
        db.Tenant = Tenant;
        return db;
    }
}

/// <summary>Reads X-Api-Key (or a bearer token): the bootstrap admin key from configuration, or a stored key by its
/// hash (cached briefly).</summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory logger,
    UrlEncoder encoder,
    IDbContextFactory<TransferDbContext> dbFactory,
    IMemoryCache cache,
    IOptions<AuthOptions> auth,
    IHostEnvironment environment
) : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var bootstrap = auth.Value.BootstrapAdminKey;
        var presented = PresentedKey();
        if (presented is null)
        {
            // Development without a bootstrap key: an open service, as the start-up warning says.
            return string.IsNullOrEmpty(bootstrap) && environment.IsDevelopment()
                ? Success("development", Caller.DefaultTenant, KeyScope.Admin)
                : AuthenticateResult.NoResult();
        }
        var hash = Caller.Hash(presented);
        if (!string.IsNullOrEmpty(bootstrap) && CryptographicOperations.FixedTimeEquals(hash, Caller.Hash(bootstrap)))
            return Success("bootstrap", Caller.DefaultTenant, KeyScope.Admin);
        // Only keys that exist are cached: made-up keys must not fill the cache (nor keep a new key unknown).
        var cacheKey = "api-key:" + Convert.ToHexString(hash);
        if (!cache.TryGetValue(cacheKey, out ApiKey? key))
        {
            await using var db = await dbFactory.CreateDbContextAsync(Context.RequestAborted);
            key = await db.ApiKeys.AsNoTracking().FirstOrDefaultAsync(k => k.Sha256 == hash, Context.RequestAborted);
            if (key is not null)
                cache.Set(cacheKey, key, auth.Value.KeyCacheDuration);
        }
        if (key is null)
            return AuthenticateResult.Fail("X-Api-Key: the key is not known.");
        if (key.RevokedAt is not null)
            return AuthenticateResult.Fail($"X-Api-Key: the key {key.Prefix}… was revoked at {key.RevokedAt:u}.");
        return Success(key.Id.ToString(), key.Tenant, key.Scope);
    }

    /// <summary>X-Api-Key, or a bearer token (what scrapers such as Prometheus send).</summary>
    private string? PresentedKey()
    {
        if (Request.Headers.TryGetValue(Caller.Header, out var values) && !string.IsNullOrEmpty(values[0]))
            return values[0];
        var authorization = Request.Headers.Authorization.ToString();
        return authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) && authorization.Length > 7
            ? authorization[7..].Trim()
            : null;
    }

    private static AuthenticateResult Success(string keyId, string tenant, KeyScope scope)
    {
        var identity = new ClaimsIdentity(
            [
                new Claim(ClaimTypes.NameIdentifier, keyId),
                new Claim(Caller.TenantClaim, tenant),
                new Claim("scope", scope.ToString()),
            ],
            Caller.Scheme
        );
        foreach (var granted in Enum.GetValues<KeyScope>().Where(s => s <= scope))
            identity.AddClaim(new Claim(ClaimTypes.Role, granted.ToString().ToLowerInvariant()));
        return AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), Caller.Scheme));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        // The result of this request's authentication (computed once): why a presented key was refused.
        var result = await HandleAuthenticateOnceSafeAsync();
        await Problem(
            StatusCodes.Status401Unauthorized,
            "API key required",
            result.Failure?.Message
                ?? $"{Caller.Header}: send an API key in the {Caller.Header} header (POST /api/keys with an admin key "
                    + "creates one)."
        );
    }

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties) =>
        Problem(
            StatusCodes.Status403Forbidden,
            "Scope too narrow",
            $"{Caller.Header}: this key's scope is {Context.User.FindFirstValue("scope")}; "
                + $"{Context.Request.Method} {Context.Request.Path} needs a wider one (predict < train < admin)."
        );

    private Task Problem(int status, string title, string detail)
    {
        Response.StatusCode = status;
        return Context
            .RequestServices.GetRequiredService<IProblemDetailsService>()
            .WriteAsync(
                new ProblemDetailsContext
                {
                    HttpContext = Context,
                    ProblemDetails =
                    {
                        Status = status,
                        Title = title,
                        Detail = detail,
                    },
                }
            )
            .AsTask();
    }
}
