using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace TransferApi.Tests.Contract;

/// <summary>
/// The public shape of an OpenAPI document as sorted lines a reviewer can read in a diff: each operation with its
/// operationId, parameters, request bodies and responses, then each schema's properties with their types.
/// Descriptions and examples are left out: rewording them is not a contract change.
/// </summary>
public static class OpenApiSnapshot
{
    public static IReadOnlyList<string> Lines(JsonNode document)
    {
        var lines = new List<string>();
        foreach (var (path, item) in document["paths"]!.AsObject())
        foreach (var (method, operationNode) in item!.AsObject())
        {
            var operation = operationNode!.AsObject();
            var at = $"{method.ToUpperInvariant()} {path}";
            lines.Add($"{at} operationId={operation["operationId"]?.GetValue<string>() ?? "(none)"}");
            foreach (var parameter in operation["parameters"]?.AsArray() ?? [])
            {
                var required = parameter!["required"]?.GetValue<bool>() == true ? " required" : "";
                lines.Add(
                    $"{at} parameter {parameter["name"]} in {parameter["in"]}{required}: {TypeOf(parameter["schema"])}"
                );
            }
            foreach (var (mediaType, media) in operation["requestBody"]?["content"]?.AsObject() ?? [])
                lines.Add($"{at} body {mediaType}: {TypeOf(media!["schema"])}");
            foreach (var (status, response) in operation["responses"]!.AsObject())
            {
                var content = response!["content"]?.AsObject();
                if (content is null || content.Count == 0)
                    lines.Add($"{at} response {status}");
                foreach (var (mediaType, media) in content ?? [])
                    lines.Add($"{at} response {status} {mediaType}: {TypeOf(media!["schema"])}");
            }
        }
        foreach (var (name, schema) in document["components"]?["schemas"]?.AsObject() ?? [])
        {
            if (schema!["enum"] is JsonArray values)
                lines.Add($"schema {name}: enum {string.Join(" | ", values.Select(v => v!.ToString()))}");
            var required = (schema["required"]?.AsArray() ?? []).Select(r => r!.GetValue<string>()).ToHashSet();
            foreach (var (property, propertySchema) in schema["properties"]?.AsObject() ?? [])
                lines.Add(
                    $"schema {name}.{property}{(required.Contains(property) ? "" : "?")}: {TypeOf(propertySchema)}"
                );
        }
        return lines.Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>Schema properties that have no description, as "Schema.property".</summary>
    public static IReadOnlyList<string> UndescribedProperties(JsonNode document) =>
        (document["components"]?["schemas"]?.AsObject() ?? [])
            .SelectMany(schema =>
                (schema.Value!["properties"]?.AsObject() ?? [])
                    .Where(p => string.IsNullOrWhiteSpace(Description(p.Value)))
                    .Select(p => $"{schema.Key}.{p.Key}")
            )
            .ToList();

    /// <summary>A property's description, or the description of the schema it references when it only refers.</summary>
    private static string? Description(JsonNode? property) =>
        property?["description"]?.GetValue<string>()
        ?? property
            ?["allOf"]?.AsArray()
            .Select(a => a?["description"]?.GetValue<string>())
            .FirstOrDefault(d => d is not null);

    /// <summary>A schema in one short expression: a reference's name, array&lt;T&gt;, type(format), nullable
    /// marks.</summary>
    public static string TypeOf(JsonNode? schema)
    {
        if (schema is null)
            return "(none)";
        if (schema["$ref"] is { } reference)
            return reference.GetValue<string>().Split('/')[^1];
        if (schema["allOf"] is JsonArray all)
            return string.Join(" & ", all.Select(TypeOf));
        if (schema["oneOf"] is JsonArray one)
            return string.Join(" | ", one.Select(TypeOf));
        if (schema["anyOf"] is JsonArray any)
            return string.Join(" | ", any.Select(TypeOf));
        var type = schema["type"] switch
        {
            JsonArray types => string.Join(" | ", types.Select(t => t!.GetValue<string>())),
            JsonValue value => value.GetValue<string>(),
            _ => "any",
        };
        var text = new StringBuilder(type);
        if (schema["format"] is { } format)
            text.Append(CultureInfo.InvariantCulture, $"({format})");
        if (schema["items"] is { } items)
            text.Append(CultureInfo.InvariantCulture, $"<{TypeOf(items)}>");
        if (schema["additionalProperties"] is JsonObject values)
            text.Append(CultureInfo.InvariantCulture, $"<string, {TypeOf(values)}>");
        if (schema["properties"] is JsonObject properties)
            text.Append(
                CultureInfo.InvariantCulture,
                $" {{{string.Join(", ", properties.Select(p => $"{p.Key}: {TypeOf(p.Value)}"))}}}"
            );
        if (schema["enum"] is JsonArray values2)
            text.Append(CultureInfo.InvariantCulture, $" [{string.Join(" | ", values2)}]");
        if (schema["nullable"]?.GetValue<bool>() == true)
            text.Append(" | null");
        return text.ToString();
    }

    /// <summary>Lines only in <paramref name="expected"/> (-) and only in <paramref name="actual"/> (+).</summary>
    public static string Diff(IReadOnlyList<string> expected, IReadOnlyList<string> actual)
    {
        var removed = expected.Except(actual).Select(l => "- " + l);
        var added = actual.Except(expected).Select(l => "+ " + l);
        return string.Join('\n', removed.Concat(added));
    }
}
