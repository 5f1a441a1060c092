using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using TransferApi.Http;
using TransferApi.Persistence;
using TransferApi.Services;

namespace TransferApi.Features.Keys;

/// <param name="Name">What the key is for, e.g. "checkout-service".</param>
/// <param name="Tenant">Whose data sets, jobs and models the key works with (default: "default").</param>
/// <param name="Scope">
/// Predict (predict only), Train (data sets, jobs, models and predict) or Admin (also keys and backbones).
/// </param>
public sealed record CreateKeyRequest(string? Name, string? Tenant, KeyScope? Scope);

/// <param name="Id">The key's id (not its secret).</param>
/// <param name="Name">What the key is for.</param>
/// <param name="Tenant">Whose data sets, jobs and models the key works with.</param>
/// <param name="Scope">Predict, Train or Admin.</param>
/// <param name="Prefix">The secret's first characters, to tell keys apart.</param>
/// <param name="CreatedAt">When it was created (UTC).</param>
/// <param name="RevokedAt">When it was revoked (UTC); null while it works.</param>
/// <param name="Key">The secret, only in the answer to POST: store it now, it cannot be read again.</param>
public sealed record KeyResponse(
    Guid Id,
    string Name,
    string Tenant,
    KeyScope Scope,
    string Prefix,
    DateTime CreatedAt,
    DateTime? RevokedAt,
    string? Key = null
);

public static partial class KeyEndpoints
{
    public static RouteGroupBuilder MapKeyEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/keys").WithTags("Keys").RequireAuthorization(Caller.Admin);
        group
            .MapPost("/", Create)
            .WithName("CreateKey")
            .WithSummary("Create an API key (admin); the answer holds the secret, once");
        group.MapGet("/", List).WithName("ListKeys").WithSummary("List API keys without their secrets (admin)");
        group
            .MapDelete("/{id:guid}", Revoke)
            .WithName("RevokeKey")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Revoke an API key (admin); it stops working within seconds");
        return group;
    }

    internal static async Task<Results<Created<KeyResponse>, ValidationProblem>> Create(
        CreateKeyRequest request,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var errors = new Dictionary<string, string[]>();
        var name = request.Name?.Trim() ?? "";
        var tenant = request.Tenant?.Trim() ?? Caller.DefaultTenant;
        if (name.Length is 0 or > 200)
            errors["name"] = ["name must be 1 to 200 characters."];
        if (!TenantPattern().IsMatch(tenant))
            errors["tenant"] = ["tenant must be 1-100 characters: lower-case letters, digits, '.', '_' or '-'."];
        if (request.Scope is null || !Enum.IsDefined(request.Scope.Value))
            errors["scope"] = ["scope must be Predict, Train or Admin."];
        if (errors.Count > 0)
            return TypedResults.ValidationProblem(errors);

        var secret = Caller.NewKey();
        var key = new ApiKey
        {
            Id = Guid.CreateVersion7(),
            Name = name,
            Tenant = tenant,
            Scope = request.Scope!.Value,
            Sha256 = Caller.Hash(secret),
            Prefix = secret[..10],
            CreatedAt = DateTime.UtcNow,
        };
        db.ApiKeys.Add(key);
        await db.SaveChangesAsync(cancellation);
        return TypedResults.Created($"/api/keys/{key.Id}", ToResponse(key) with { Key = secret });
    }

    internal static async Task<Ok<List<KeyResponse>>> List(TransferDbContext db, CancellationToken cancellation) =>
        TypedResults.Ok(
            (await db.ApiKeys.AsNoTracking().OrderBy(k => k.CreatedAt).ToListAsync(cancellation))
                .Select(k => ToResponse(k))
                .ToList()
        );

    internal static async Task<Results<NoContent, ProblemHttpResult>> Revoke(
        Guid id,
        TransferDbContext db,
        CancellationToken cancellation
    )
    {
        var revoked = await db
            .ApiKeys.Where(k => k.Id == id && k.RevokedAt == null)
            .ExecuteUpdateAsync(s => s.SetProperty(k => k.RevokedAt, DateTime.UtcNow), cancellation);
        return revoked > 0 || await db.ApiKeys.AnyAsync(k => k.Id == id, cancellation)
            ? TypedResults.NoContent()
            : Problems.NotFound("API key", id);
    }

    private static KeyResponse ToResponse(ApiKey key) =>
        new(key.Id, key.Name, key.Tenant, key.Scope, key.Prefix, key.CreatedAt, key.RevokedAt);

    [GeneratedRegex("^[a-z0-9][a-z0-9._-]{0,99}$")]
    private static partial Regex TenantPattern();
}
