using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace TransferApi.Features.Models;

/// <summary>
/// Describes the bodies that carry files as what they are, so Swagger UI offers file pickers: /predict's multipart
/// `file` parts (one or more images) and raw image/* bodies, and the batch-prediction form (a zip `file` and
/// `topK`) beside its JSON body.
/// </summary>
internal sealed class UploadBodyOperationFilter : IOperationFilter
{
    private static readonly OpenApiSchema Binary = new() { Type = JsonSchemaType.String, Format = "binary" };

    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        if (operation.RequestBody?.Content is not { } content || !content.ContainsKey("multipart/form-data"))
            return;
        if (operation.OperationId == "Predict")
        {
            content["multipart/form-data"] = Form(
                (
                    "file",
                    new OpenApiSchema
                    {
                        Type = JsonSchemaType.Array,
                        Items = Binary,
                        Description =
                            "One image (answered as `predictions`) or several (answered as `results`, one per file).",
                    }
                )
            );
            foreach (var type in PredictRequestReader.RawImageContentTypes)
                content[type] = new OpenApiMediaType { Schema = Binary };
        }
        else if (operation.OperationId == "CreateBatchPrediction")
            content["multipart/form-data"] = Form(
                (
                    "file",
                    new OpenApiSchema
                    {
                        Type = JsonSchemaType.String,
                        Format = "binary",
                        Description =
                            "A zip of images, in any folders; each image's result names it by its path in the zip.",
                    }
                ),
                (
                    "topK",
                    new OpenApiSchema
                    {
                        Type = JsonSchemaType.Integer,
                        Format = "int32",
                        Description = "Labels per image in the results (default 5).",
                    }
                )
            );
    }

    /// <summary>A form whose first field is required.</summary>
    private static OpenApiMediaType Form(params (string Name, IOpenApiSchema Schema)[] fields) =>
        new()
        {
            Schema = new OpenApiSchema
            {
                Type = JsonSchemaType.Object,
                Required = new HashSet<string> { fields[0].Name },
                Properties = fields.ToDictionary(f => f.Name, f => f.Schema),
            },
        };
}
