using Microsoft.OpenApi;
using TransferApi.Features.Models;
using TransferApi.Http;
using TransferApi.Services;

namespace TransferApi.Hosting;

public static class OpenApiRegistration
{
    public const string DocumentName = "v1";

    /// <summary>The OpenAPI document at /swagger/v1/swagger.json, from the endpoints' metadata and XML docs.</summary>
    public static void AddOpenApiDocument(this IServiceCollection services)
    {
        services.AddEndpointsApiExplorer();
        services.AddSwaggerGen(o =>
        {
            o.SwaggerDoc(
                DocumentName,
                new()
                {
                    Title = "TransferApi",
                    Version = DocumentName,
                    Description =
                        "Transfer learning as a service: upload labelled images, train a classifier on a "
                        + "pretrained backbone (frozen, or with its last stages fine-tuned), predict, export.",
                }
            );
            o.IncludeXmlComments(Path.Combine(AppContext.BaseDirectory, "TransferApi.xml"));
            o.SupportNonNullableReferenceTypes();
            // Properties of a record type keep their own description (allOf around the reference).
            o.UseAllOfToExtendReferenceSchemas();
            o.OperationFilter<UploadBodyOperationFilter>();
            o.OperationFilter<IdempotencyKeyOperationFilter>();
            o.SchemaFilter<FrameworkSchemaDescriptions>();
            o.SchemaFilter<ResponseFieldsRequired>();
            // The Authorize button: one X-Api-Key for every call made from Swagger UI.
            o.AddSecurityDefinition(
                Caller.Scheme,
                new OpenApiSecurityScheme
                {
                    Type = SecuritySchemeType.ApiKey,
                    In = ParameterLocation.Header,
                    Name = Caller.Header,
                    Description =
                        "An API key (POST /api/keys with an admin key creates one). Scopes: predict < train < admin.",
                }
            );
            o.AddSecurityRequirement(document => new OpenApiSecurityRequirement
            {
                [new OpenApiSecuritySchemeReference(Caller.Scheme, document)] = [],
            });
        });
    }
}
