using System.Net;
using System.Net.Http.Json;
using TransferApi.Features.Keys;
using TransferApi.Persistence;

namespace TransferApi.Tests;

public static class ApiKeys
{
    /// <summary>Creates a key through POST /api/keys with an admin client; returns its secret, shown only in this
    /// answer.</summary>
    public static async Task<string> CreateKeyAsync(this HttpClient admin, KeyScope scope, string tenant = "default")
    {
        var created = await admin.PostAsJsonAsync(
            "/api/keys",
            new
            {
                name = $"{tenant} {scope}",
                tenant,
                scope = scope.ToString(),
            }
        );
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var key = await created.ReadAsync<KeyResponse>();
        Assert.StartsWith("tak_", key.Key);
        Assert.Equal((scope, tenant), (key.Scope, key.Tenant));
        return key.Key!;
    }
}
