using System.Net.ServerSentEvents;
using Microsoft.AspNetCore.Mvc;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace TransferApi.Hosting;

/// <summary>
/// Descriptions for the framework's own schemas, whose XML docs the OpenAPI document cannot read: problem details
/// (RFC 9457) and Server-Sent Events items.
/// </summary>
internal sealed class FrameworkSchemaDescriptions : ISchemaFilter
{
    private static readonly Dictionary<string, string> ProblemFields = new()
    {
        ["type"] = "A URI naming the kind of problem (RFC 9457).",
        ["title"] = "A short summary of the kind of problem.",
        ["status"] = "The HTTP status code.",
        ["detail"] = "What was wrong with this request, naming the field or file at fault first (\"file: ...\").",
        ["instance"] = "The request path the problem occurred on.",
        ["errors"] = "Validation problems: each invalid field with its messages.",
    };

    private static readonly Dictionary<string, string> EventFields = new()
    {
        ["data"] = "The event's JSON payload: a progress object, a metrics object or the final status.",
        ["eventType"] = "progress, metrics or status.",
        ["eventId"] = "Not set.",
        ["reconnectionInterval"] = "Not set.",
    };

    public void Apply(IOpenApiSchema schema, SchemaFilterContext context)
    {
        var fields =
            typeof(ProblemDetails).IsAssignableFrom(context.Type) ? ProblemFields
            : context.Type.IsGenericType && context.Type.GetGenericTypeDefinition() == typeof(SseItem<>) ? EventFields
            : null;
        if (fields is null || schema is not OpenApiSchema concrete || concrete.Properties is null)
            return;
        foreach (var (name, property) in concrete.Properties)
            if (fields.TryGetValue(name, out var description) && property is OpenApiSchema described)
                described.Description ??= description;
    }
}
