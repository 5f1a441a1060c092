using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using TransferApi.Options;
using TransferApi.Services;

namespace TransferApi.Hosting;

public static class AuthenticationRegistration
{
    /// <summary>X-Api-Key authentication; every endpoint needs a key unless it says otherwise (health
    /// checks).</summary>
    public static void AddApiKeyAuthentication(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<AuthOptions>().Bind(configuration.GetSection(AuthOptions.Section));
        services.AddMemoryCache();
        services
            .AddAuthentication(Caller.Scheme)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(Caller.Scheme, null);
        services
            .AddAuthorizationBuilder()
            // Scopes nest: admin > train > predict.
            .SetFallbackPolicy(new AuthorizationPolicyBuilder(Caller.Scheme).RequireAuthenticatedUser().Build())
            .AddPolicy(Caller.Predict, p => p.RequireRole(Caller.Predict))
            .AddPolicy(Caller.Train, p => p.RequireRole(Caller.Train))
            .AddPolicy(Caller.Admin, p => p.RequireRole(Caller.Admin));
    }
}
