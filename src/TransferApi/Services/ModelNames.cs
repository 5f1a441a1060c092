using System.Text.RegularExpressions;
using Microsoft.EntityFrameworkCore;
using TransferApi.Persistence;

namespace TransferApi.Services;

/// <summary>
/// How clients name a model in a route: its id, <c>name</c> (the latest version), <c>name@3</c> (version 3) or
/// <c>name@production</c> (whatever version that alias points at).
/// </summary>
public sealed record ModelReference(Guid? Id, string? Name, int? Version, string? Alias)
{
    public static bool TryParse(string text, out ModelReference reference, out string problem)
    {
        (reference, problem) = (new ModelReference(null, null, null, null), "");
        if (Guid.TryParse(text, out var id))
        {
            reference = reference with { Id = id };
            return true;
        }
        var at = text.IndexOf('@', StringComparison.Ordinal);
        var name = at < 0 ? text : text[..at];
        if (ModelNames.Problem(name, "name") is { } bad)
        {
            problem = $"id: '{text}' is neither a model id nor name, name@version or name@alias ({bad})";
            return false;
        }
        if (at < 0)
        {
            reference = reference with { Name = name };
            return true;
        }
        var label = text[(at + 1)..];
        if (
            int.TryParse(
                label,
                System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture,
                out var version
            )
            && version > 0
        )
        {
            reference = reference with { Name = name, Version = version };
            return true;
        }
        if (ModelNames.Problem(label, "alias") is { } badAlias)
        {
            problem = $"id: '{text}' has an invalid version or alias ({badAlias})";
            return false;
        }
        reference = reference with { Name = name, Alias = label };
        return true;
    }

    public override string ToString() =>
        Id?.ToString()
        ?? (
            Alias is not null ? $"{Name}@{Alias}"
            : Version is not null ? $"{Name}@{Version}"
            : Name!
        );
}

/// <summary>Model names and aliases: what they may look like, and resolving and assigning them (one place for
/// both).</summary>
public static partial class ModelNames
{
    public const int MaxLength = 64;

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    private static partial Regex Pattern();

    /// <summary>Why <paramref name="value"/> cannot be a name or alias, or null when it can.</summary>
    public static string? Problem(string? value, string what)
    {
        if (string.IsNullOrEmpty(value))
            return $"{what} must not be empty";
        if (value.Length > MaxLength)
            return $"{what} is longer than {MaxLength} characters";
        if (!Pattern().IsMatch(value))
            return $"{what} may hold letters, digits, '.', '_' and '-', starting with a letter or digit";
        if (what == "alias" && value.All(char.IsAsciiDigit))
            return "an alias cannot be a number (numbers are versions)";
        return null;
    }

    /// <summary>The id of the model <paramref name="reference"/> points at, or null.</summary>
    public static async Task<Guid?> ResolveAsync(
        TransferDbContext db,
        ModelReference reference,
        CancellationToken cancellation
    )
    {
        if (reference.Id is { } id)
            return await db.Models.AnyAsync(m => m.Id == id, cancellation) ? id : null;
        if (reference.Alias is { } alias)
            return await db
                .ModelAliases.Where(a => a.Name == reference.Name && a.Alias == alias)
                .Select(a => (Guid?)a.ModelId)
                .FirstOrDefaultAsync(cancellation);
        var versions = db.Models.Where(m => m.Name == reference.Name);
        if (reference.Version is { } version)
            versions = versions.Where(m => m.Version == version);
        return await versions
            .OrderByDescending(m => m.Version)
            .Select(m => (Guid?)m.Id)
            .FirstOrDefaultAsync(cancellation);
    }

    /// <summary>
    /// Makes <paramref name="model"/> the next version of <paramref name="name"/> (saved by the caller's SaveChanges).
    /// Its aliases under an earlier name are dropped: they named that model's versions. Call it inside a
    /// transaction: a lock on the name, held to its end, keeps two namings from taking the same version.
    /// </summary>
    public static async Task AssignAsync(
        TransferDbContext db,
        TrainedModel model,
        string name,
        CancellationToken cancellation
    )
    {
        if (model.Name == name)
            return;
        // Names are per tenant; the worker's context sees every tenant, so the tenant is named explicitly.
        await db.Database.ExecuteSqlInterpolatedAsync(
            $"SELECT pg_advisory_xact_lock(hashtext({"model-name:" + model.Tenant + "/" + name}))",
            cancellation
        );
        await db.ModelAliases.Where(a => a.ModelId == model.Id).ExecuteDeleteAsync(cancellation);
        var latest = await db
            .Models.Where(m => m.Tenant == model.Tenant && m.Name == name)
            .MaxAsync(m => m.Version, cancellation);
        (model.Name, model.Version) = (name, (latest ?? 0) + 1);
    }
}
