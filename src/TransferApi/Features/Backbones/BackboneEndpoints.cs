using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Http;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training.Backbones;
using TransferApi.Training.Imaging;

namespace TransferApi.Features.Backbones;

public static partial class BackboneEndpoints
{
    public static RouteGroupBuilder MapBackboneEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/backbones").WithTags("Backbones");
        // Weights files outgrow data-set uploads' limits: this route has its own.
        var maxWeights = app
            .ServiceProvider.GetRequiredService<IOptions<UploadOptions>>()
            .Value.MaxBackboneWeightsBytes;
        group
            .MapGet("/", List)
            .WithName("ListBackbones")
            .RequireAuthorization(Caller.Predict)
            .WithSummary("The pretrained backbones jobs can train on");
        group
            .MapGet("/{id}", Get)
            .WithName("GetBackbone")
            .RequireAuthorization(Caller.Predict)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Read one backbone");
        group
            .MapPost("/", Register)
            .WithName("RegisterBackbone")
            .RequireAuthorization(Caller.Admin)
            .RequireRateLimiting(RateLimits.Upload)
            .DisableAntiforgery()
            .WithMetadata(new RequestSizeLimitAttribute(maxWeights + 1024 * 1024))
            .WithFormOptions(multipartBodyLengthLimit: maxWeights + 1024 * 1024)
            .Accepts<IFormFile>("multipart/form-data")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .WithSummary("Register a backbone from a weights file")
            .WithDescription(RegisterDescription);
        group
            .MapDelete("/{id}", Delete)
            .WithName("DeleteBackbone")
            .RequireAuthorization(Caller.Admin)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Delete a registered backbone that no model or unfinished job uses");
        return group;
    }

    internal static async Task<Ok<IReadOnlyList<BackboneResponse>>> List(
        TransferDbContext db,
        BackboneRegistry backbones,
        CancellationToken cancellation
    )
    {
        var list = new List<BackboneResponse>();
        foreach (var id in BackboneCatalog.BuiltIn)
            list.Add((await backbones.GetAsync(id)).ToResponse());
        var registered = await db.Backbones.AsNoTracking().OrderBy(b => b.CreatedAt).ToListAsync(cancellation);
        list.AddRange(registered.Select(r => r.ToResponse()));
        return TypedResults.Ok<IReadOnlyList<BackboneResponse>>(list);
    }

    internal static async Task<Results<Ok<BackboneResponse>, ProblemHttpResult>> Get(
        string id,
        TransferDbContext db,
        BackboneRegistry backbones,
        CancellationToken cancellation
    )
    {
        if (BackboneCatalog.BuiltIn.Contains(id))
            return TypedResults.Ok((await backbones.GetAsync(id)).ToResponse());
        var row = await db.Backbones.AsNoTracking().FirstOrDefaultAsync(b => b.Id == id, cancellation);
        return row is null ? NotFound(id) : TypedResults.Ok(row.ToResponse());
    }

    /// <param name="architecture">resnet18, resnet34, resnet50, mobilenet_v2, vgg16 or inception_v3.</param>
    /// <param name="file">The weights: .pt/.pth (torch.save of a state dict), .safetensors, or TorchSharp's
    /// format.</param>
    /// <param name="id">
    /// The id jobs will name (lower-case letters, digits, '.', '_', '-'); default: architecture and the weights' hash.
    /// </param>
    /// <param name="preprocessing">
    /// JSON overrides of the architecture's preprocessing, e.g. {"mean":[0.5,0.5,0.5],"std":[0.5,0.5,0.5]}.
    /// </param>
    internal static async Task<Results<Created<BackboneResponse>, Ok<BackboneResponse>, ValidationProblem>> Register(
        [FromForm] string? architecture,
        IFormFile? file,
        [FromForm] string? id,
        [FromForm] string? preprocessing,
        BackboneImport import,
        CancellationToken cancellation
    )
    {
        var errors = new Dictionary<string, string[]>();
        var network = FindArchitecture(architecture, errors);
        if (file is null || file.Length == 0)
            errors["file"] = ["file: a non-empty weights file is required."];
        if (id is not null && !IdPattern().IsMatch(id))
            errors["id"] =
            [
                "id must be 1-100 characters: lower-case letters, digits, '.', '_' or '-', starting with a "
                    + "letter or digit.",
            ];
        if (id is not null && BackboneCatalog.BuiltIn.Contains(id))
            errors["id"] = [$"id '{id}' is a built-in backbone."];
        var spec = network is null ? null : ReadPreprocessing(network.DefaultPreprocessing, preprocessing, errors);
        if (errors.Count > 0)
            return TypedResults.ValidationProblem(errors);

        await using var content = file!.OpenReadStream();
        var imported = await import.ImportAsync(
            new WeightsUpload(network!, content, file.FileName, file.Length, id, spec!),
            cancellation
        );
        var response = imported.Row.ToResponse();
        return imported.Created
            ? TypedResults.Created($"/api/backbones/{response.Id}", response)
            : TypedResults.Ok(response);
    }

    private static BackboneArchitecture? FindArchitecture(string? name, Dictionary<string, string[]> errors)
    {
        var known = BackboneArchitecture.Registrable;
        var network = name is null
            ? null
            : known.FirstOrDefault(a => string.Equals(a.Name, name.Trim(), StringComparison.OrdinalIgnoreCase));
        if (network is null)
            errors["architecture"] =
            [
                $"architecture {(name is null ? "is required" : $"'{name}' is not known")}; "
                    + $"one of {string.Join(", ", known.Select(a => a.Name))}.",
            ];
        return network;
    }

    /// <summary>The architecture's preprocessing with the JSON overrides; problems go into <paramref
    /// name="errors"/>.</summary>
    private static PreprocessingSpec ReadPreprocessing(
        PreprocessingSpec defaults,
        string? json,
        Dictionary<string, string[]> errors
    )
    {
        if (json is null)
            return defaults;
        PreprocessingRequest? request;
        try
        {
            request = JsonSerializer.Deserialize<PreprocessingRequest>(json, JsonSerializerOptions.Web);
        }
        catch (JsonException e)
        {
            errors["preprocessing"] = [$"preprocessing is not valid JSON: {e.Message}"];
            return defaults;
        }
        var spec = request?.Over(defaults) ?? defaults;
        foreach (var group in spec.Problems().GroupBy(p => p.Field))
            errors[group.Key] = group.Select(p => p.Message).ToArray();
        return spec;
    }

    internal static async Task<Results<NoContent, ProblemHttpResult>> Delete(
        string id,
        TransferDbContext db,
        BackboneRegistry backbones,
        CancellationToken cancellation
    )
    {
        if (BackboneCatalog.BuiltIn.Contains(id))
            return Problems.Conflict("Built-in backbone", $"id: '{id}' is built in and cannot be deleted.");
        // Exclusive against job creations naming this backbone (they hold it shared): the counts below see their jobs.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellation);
        await RowLocks.AdvisoryAsync(db, RowLocks.Backbone(id), shared: false, cancellation);
        var row = await db.Backbones.FirstOrDefaultAsync(b => b.Id == id, cancellation);
        if (row is null)
            return NotFound(id);
        // Backbones serve every tenant: count every tenant's models and jobs.
        var models = await db.Models.IgnoreQueryFilters().CountAsync(m => m.Backbone == id, cancellation);
        var jobs = await db
            .TrainingJobs.IgnoreQueryFilters()
            .CountAsync(
                j => j.Backbone == id && (j.Status == JobStatus.Queued || j.Status == JobStatus.Running),
                cancellation
            );
        if (models + jobs > 0)
            return Problems.Conflict(
                "Backbone in use",
                $"id: '{id}' is used by {models} model(s) and {jobs} unfinished job(s); delete those models and let "
                    + "the jobs end first."
            );
        db.Backbones.Remove(row);
        await db.SaveChangesAsync(cancellation);
        await db.ImageFeatures.Where(f => f.BackboneId == id).ExecuteDeleteAsync(cancellation);
        if (!await db.Backbones.AnyAsync(b => b.WeightsSha256 == row.WeightsSha256, cancellation))
            await db.BackboneWeights.Where(w => w.Sha256 == row.WeightsSha256).ExecuteDeleteAsync(cancellation);
        await transaction.CommitAsync(cancellation);
        await backbones.ForgetAsync(id);
        return TypedResults.NoContent();
    }

    private static ProblemHttpResult NotFound(string id) =>
        TypedResults.Problem(
            $"id: no backbone is '{id}'; GET /api/backbones lists them.",
            statusCode: StatusCodes.Status404NotFound,
            title: "Backbone not found"
        );

    [GeneratedRegex("^[a-z0-9][a-z0-9._-]{0,99}$")]
    private static partial Regex IdPattern();

    private static readonly string RegisterDescription = $"""
        Multipart fields: `architecture` ({string.Join(", ", BackboneArchitecture.Registrable.Select(a => a.Name))}),
        `file` (a PyTorch state dict saved with torch.save (.pt/.pth), a .safetensors file, or TorchSharp's
        Module.save format; recognised by content), optional `id`, optional `preprocessing` (JSON: inputSize,
        resizeTo, channelOrder, mean, std, scale; defaults are TorchVision's for the architecture). Names and shapes
        must match TorchVision's definition exactly; the ImageNet classifier (fc, classifier, AuxLogits) and
        num_batches_tracked are dropped. The first bad key is named in a 422. Weights are stored once per content
        hash; registering the same weights again under the same id answers 200 with the existing backbone.
        """;
}
