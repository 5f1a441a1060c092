using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace TransferApi.Hosting;

/// <summary>
/// Marks every field an answer always carries as required in the OpenAPI document (properties that cannot be null),
/// so generated clients (src/TransferApi.Client) type an id as <c>Guid</c>, not <c>Guid?</c>. Request bodies (types
/// named *Request, whose fields are optional by design) are left as they are.
/// </summary>
internal sealed class ResponseFieldsRequired : ISchemaFilter
{
    private readonly NullabilityInfoContext nullability = new();

    public void Apply(IOpenApiSchema schema, SchemaFilterContext context)
    {
        var type = context.Type;
        if (
            schema is not OpenApiSchema concrete
            || concrete.Properties is not { Count: > 0 }
            || type.Namespace?.StartsWith("TransferApi", StringComparison.Ordinal) != true
            || type.Name.EndsWith("Request", StringComparison.Ordinal)
        )
            return;
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            var name = property.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name
                ?? JsonNamingPolicy.CamelCase.ConvertName(property.Name);
            if (
                !concrete.Properties.ContainsKey(name)
                || property.GetCustomAttribute<JsonIgnoreAttribute>() is not null
                || nullability.Create(property).ReadState != NullabilityState.NotNull
            )
                continue;
            concrete.Required ??= new HashSet<string>();
            concrete.Required.Add(name);
        }
    }
}
