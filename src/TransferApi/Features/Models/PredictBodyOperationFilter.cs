using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace TransferApi.Features.Models;

/// <summary>
/// Describes /predict's bodies as what they are, so Swagger UI offers file pickers: multipart `file` parts
/// (one or more binary files) and a raw binary image body for each image/* type.
/// </summary>
internal sealed class PredictBodyOperationFilter : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        if (
            operation.RequestBody?.Content is not { } content
            || !content.ContainsKey("multipart/form-data")
            || !content.Keys.Intersect(PredictRequestReader.RawImageContentTypes).Any()
        )
            return;
        var binary = new OpenApiSchema { Type = JsonSchemaType.String, Format = "binary" };
        content["multipart/form-data"] = new OpenApiMediaType
        {
            Schema = new OpenApiSchema
            {
                Type = JsonSchemaType.Object,
                Required = new HashSet<string> { "file" },
                Properties = new Dictionary<string, IOpenApiSchema>
                {
                    ["file"] = new OpenApiSchema
                    {
                        Type = JsonSchemaType.Array,
                        Items = binary,
                        Description =
                            "One image (answered as `predictions`) or several (answered as `results`, one per file).",
                    },
                },
            },
        };
        foreach (var type in PredictRequestReader.RawImageContentTypes)
            content[type] = new OpenApiMediaType { Schema = binary };
    }
}
