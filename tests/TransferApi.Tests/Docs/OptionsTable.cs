using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using TransferApi.Options;

namespace TransferApi.Tests.Docs;

/// <summary>
/// The configuration table of docs/configuration.md, generated from the option classes themselves: every setting's
/// key, its default as the code sets it, its validated range and its XML documentation.
/// </summary>
public static partial class OptionsTable
{
    private static readonly string[] SectionOrder =
    [
        "Service",
        "Auth",
        "RateLimits",
        "Worker",
        "Backbones",
        "Quotas",
        "Uploads",
        "Datasets",
        "Serving",
        "Idempotency",
        "Webhooks",
        "Secrets",
    ];

    public static string Generate()
    {
        var docs = XDocument.Load(Path.Combine(AppContext.BaseDirectory, "TransferApi.xml"));
        var summaries = docs.Descendants("member")
            .ToDictionary(m => m.Attribute("name")!.Value, m => Text(m.Element("summary")));
        var classes = typeof(ServiceOptions)
            .Assembly.GetTypes()
            .Where(t => t.Namespace == typeof(ServiceOptions).Namespace && t.GetField("Section") is { IsLiteral: true })
            .OrderBy(t =>
                Array.IndexOf(SectionOrder, (string)t.GetField("Section")!.GetValue(null)!) is var i and >= 0
                    ? i
                    : int.MaxValue
            )
            .ToList();
        var table = new StringBuilder("| key | default | allowed | meaning |\n| --- | --- | --- | --- |\n");
        foreach (var type in classes)
        {
            var section = (string)type.GetField("Section")!.GetValue(null)!;
            var defaults = Activator.CreateInstance(type);
            foreach (var property in type.GetProperties().Where(p => p.CanWrite))
            {
                summaries.TryGetValue($"P:{type.FullName}.{property.Name}", out var meaning);
                table.Append(
                    CultureInfo.InvariantCulture,
                    $"| `{section}:{property.Name}` | {Default(property, property.GetValue(defaults))} | "
                        + $"{Allowed(property)} | {meaning ?? ""} |\n"
                );
            }
        }
        return table.ToString();
    }

    private static string Default(PropertyInfo property, object? value) =>
        value switch
        {
            null => "—",
            TimeSpan time => $"`{time.ToString("c", CultureInfo.InvariantCulture)}`",
            bool flag => $"`{(flag ? "true" : "false")}`",
            Enum named => $"`{named}`",
            long or int when property.Name.EndsWith("Bytes", StringComparison.Ordinal) => Bytes(
                Convert.ToInt64(value, CultureInfo.InvariantCulture)
            ),
            IFormattable number => $"`{number.ToString(null, CultureInfo.InvariantCulture)}`",
            _ => $"`{value}`",
        };

    private static string Bytes(long bytes) =>
        bytes switch
        {
            >= 1L << 30 when bytes % (1L << 30) == 0 => $"{bytes >> 30} GiB",
            >= 1L << 20 when bytes % (1L << 20) == 0 => $"{bytes >> 20} MiB",
            _ => $"`{bytes}`",
        };

    private static string Allowed(PropertyInfo property)
    {
        var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        if (type.IsEnum)
            return string.Join(", ", Enum.GetNames(type).Where(n => n != "None"));
        if (property.GetCustomAttribute<RangeAttribute>() is not { } range)
            return "";
        var bytes = property.Name.EndsWith("Bytes", StringComparison.Ordinal);
        string Bound(object value) =>
            bytes ? Bytes(Convert.ToInt64(value, CultureInfo.InvariantCulture)).Trim('`') : $"{value}";
        // An open upper end is written as the type's largest value.
        return
            range.Maximum is int or long or double
            && Convert.ToDouble(range.Maximum, CultureInfo.InvariantCulture) >= int.MaxValue
            ? $"at least {Bound(range.Minimum)}"
            : $"{Bound(range.Minimum)} to {Bound(range.Maximum)}";
    }

    /// <summary>An XML doc element as one line of Markdown: references become code, whitespace collapses.</summary>
    private static string? Text(XElement? element)
    {
        if (element is null)
            return null;
        var text = string.Concat(
            element
                .Nodes()
                .Select(node =>
                    node switch
                    {
                        XElement { Name.LocalName: "see" } see =>
                            $"`{(see.Attribute("cref") ?? see.Attribute("langword"))?.Value.Split('.')[^1]}`",
                        XElement { Name.LocalName: "c" } code => $"`{code.Value}`",
                        XElement other => other.Value,
                        _ => node.ToString(),
                    }
                )
        );
        return Whitespace().Replace(text, " ").Trim().Replace("|", "\\|", StringComparison.Ordinal);
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();
}
