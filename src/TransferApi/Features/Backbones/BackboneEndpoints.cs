using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using TransferApi.Http;
using TransferApi.Services;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Training.Backbones;
using TransferApi.Training.Imaging;

namespace TransferApi.Features.Backbones;

/// <param name="Id">What a training job's `backbone` names.</param>
/// <param name="Architecture">The network definition (TorchVision's name).</param>
/// <param name="Description">The architecture in words: blocks, feature size, stages.</param>
/// <param name="Stages">Stages `unfreezeStages` can fine-tune (the last N).</param>
/// <param name="Preprocessing">What every image goes through before the network, at training, /predict and in exports.</param>
/// <param name="Source">Where the weights came from.</param>
/// <param name="WeightsSha256">SHA-256 of the stored weights (float32, TorchSharp format); backbones with equal weights share them. Null for built-in ones.</param>
/// <param name="Default">Whether jobs without a `backbone` use it.</param>
public sealed record BackboneResponse(string Id, string Architecture, string Description, int InputSize, int FeatureSize, int Stages, PreprocessingSpec Preprocessing,
    long ParameterCount, string Source, string? WeightsSha256, bool Default, DateTime? CreatedAt);

/// <summary>Overrides of the architecture's default preprocessing; omitted fields keep the default.</summary>
/// <param name="Mean">Per-channel mean in R, G, B order, on the scaled pixels (0..1 with the default scale).</param>
/// <param name="Std">Per-channel standard deviation in R, G, B order.</param>
public sealed record PreprocessingRequest(int? InputSize, int? ResizeTo, string? ChannelOrder, float[]? Mean, float[]? Std, float? Scale);

public static partial class BackboneEndpoints
{
    public static RouteGroupBuilder MapBackboneEndpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/backbones").WithTags("Backbones");
        // Weights files outgrow data-set uploads' limits: this route has its own.
        var maxWeights = app.ServiceProvider.GetRequiredService<IOptions<UploadOptions>>().Value.MaxBackboneWeightsBytes;
        group.MapGet("/", List).RequireAuthorization(Caller.Predict).WithSummary("The pretrained backbones jobs can train on");
        group.MapGet("/{id}", Get).RequireAuthorization(Caller.Predict).ProducesProblem(StatusCodes.Status404NotFound).WithSummary("Read one backbone");
        group.MapPost("/", Register)
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
            .WithDescription("Multipart fields: `architecture` (" + string.Join(", ", BackboneArchitecture.Registrable.Select(a => a.Name))
                + "), `file` (a PyTorch state dict saved with torch.save (.pt/.pth), a .safetensors file, or TorchSharp's Module.save format; "
                + "recognised by content), optional `id`, optional `preprocessing` (JSON: inputSize, resizeTo, channelOrder, mean, std, scale; "
                + "defaults are TorchVision's for the architecture). Names and shapes must match TorchVision's definition exactly; the ImageNet "
                + "classifier (fc, classifier, AuxLogits) and num_batches_tracked are dropped. The first bad key is named in a 422. Weights are stored "
                + "once per content hash; registering the same weights again under the same id answers 200 with the existing backbone.");
        group.MapDelete("/{id}", Delete).RequireAuthorization(Caller.Admin).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict)
            .WithSummary("Delete a registered backbone that no model or unfinished job uses");
        return group;
    }

    internal static async Task<Ok<IReadOnlyList<BackboneResponse>>> List(TransferDbContext db, BackboneRegistry backbones, CancellationToken cancellation)
    {
        var list = new List<BackboneResponse>();
        foreach (var id in BackboneCatalog.BuiltIn) list.Add(BuiltIn(await backbones.GetAsync(id)));
        var registered = await db.Backbones.AsNoTracking().OrderBy(b => b.CreatedAt).ToListAsync(cancellation);
        list.AddRange(registered.Select(ToResponse));
        return TypedResults.Ok<IReadOnlyList<BackboneResponse>>(list);
    }

    internal static async Task<Results<Ok<BackboneResponse>, ProblemHttpResult>> Get(string id, TransferDbContext db, BackboneRegistry backbones, CancellationToken cancellation)
    {
        if (BackboneCatalog.BuiltIn.Contains(id)) return TypedResults.Ok(BuiltIn(await backbones.GetAsync(id)));
        var row = await db.Backbones.AsNoTracking().FirstOrDefaultAsync(b => b.Id == id, cancellation);
        return row is null ? NotFound(id) : TypedResults.Ok(ToResponse(row));
    }

    /// <param name="architecture">resnet18, resnet34, resnet50, mobilenet_v2, vgg16 or inception_v3.</param>
    /// <param name="file">The weights: .pt/.pth (torch.save of a state dict), .safetensors, or TorchSharp's format.</param>
    /// <param name="id">The id jobs will name (lower-case letters, digits, '.', '_', '-'); default: architecture and the weights' hash.</param>
    /// <param name="preprocessing">JSON overrides of the architecture's preprocessing, e.g. {"mean":[0.5,0.5,0.5],"std":[0.5,0.5,0.5]}.</param>
    internal static async Task<Results<Created<BackboneResponse>, Ok<BackboneResponse>, ValidationProblem, ProblemHttpResult>> Register(
        [FromForm] string? architecture, IFormFile? file, [FromForm] string? id, [FromForm] string? preprocessing,
        TransferDbContext db, InferenceThread inference, IOptions<UploadOptions> uploads, ILogger<BackboneRegistry> logger, CancellationToken cancellation)
    {
        var errors = new Dictionary<string, string[]>();
        var network = architecture is null ? null : BackboneArchitecture.Registrable.FirstOrDefault(a => string.Equals(a.Name, architecture.Trim(), StringComparison.OrdinalIgnoreCase));
        if (network is null)
            errors["architecture"] = [$"architecture {(architecture is null ? "is required" : $"'{architecture}' is not known")}; one of {string.Join(", ", BackboneArchitecture.Registrable.Select(a => a.Name))}."];
        if (file is null || file.Length == 0) errors["file"] = ["file: a non-empty weights file is required."];
        if (id is not null && !IdPattern().IsMatch(id))
            errors["id"] = ["id must be 1-100 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter or digit."];
        if (id is not null && BackboneCatalog.BuiltIn.Contains(id)) errors["id"] = [$"id '{id}' is a built-in backbone."];
        var spec = network?.DefaultPreprocessing;
        if (network is not null && preprocessing is not null)
        {
            (spec, var problem) = MergePreprocessing(network.DefaultPreprocessing, preprocessing);
            foreach (var group in (problem is null ? spec!.Problems() : [("preprocessing", problem)]).GroupBy(p => p.Item1))
                errors[group.Key] = group.Select(p => p.Item2).ToArray();
        }
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (file!.Length > uploads.Value.MaxBackboneWeightsBytes)
            return TypedResults.Problem($"file: {file.Length:N0} bytes; the limit is {uploads.Value.MaxBackboneWeightsBytes:N0}.", statusCode: StatusCodes.Status413PayloadTooLarge, title: "Weights file too large");

        byte[] weights;
        long parameters;
        WeightsFormat format;
        try
        {
            await using var stream = file.OpenReadStream();
            // Reading and checking tensors is libtorch work: it stays on the inference thread.
            (weights, parameters, format) = await inference.RunAsync(() => Import(network!, stream, 2 * uploads.Value.MaxBackboneWeightsBytes));
        }
        catch (WeightsRejectedException e)
        {
            return TypedResults.Problem($"file: {e.Message}", statusCode: StatusCodes.Status422UnprocessableEntity, title: "Weights do not fit the architecture");
        }
        var sha256 = SHA256.HashData(weights);
        id ??= $"{network!.Name.Replace('_', '-')}-{Convert.ToHexStringLower(sha256)[..12]}";

        var existing = await db.Backbones.AsNoTracking().FirstOrDefaultAsync(b => b.Id == id, cancellation);
        if (existing is not null)
        {
            return existing.Architecture == network!.Name && existing.WeightsSha256.SequenceEqual(sha256) && existing.Preprocessing == spec
                ? TypedResults.Ok(ToResponse(existing))
                : Problems.Conflict("Backbone id taken", $"id: '{id}' is already a backbone with other weights or preprocessing; choose another id or delete it first.");
        }
        var row = new RegisteredBackbone
        {
            Id = id,
            Architecture = network!.Name,
            Preprocessing = spec!,
            WeightsSha256 = sha256,
            ParameterCount = parameters,
            Source = $"uploaded {Path.GetFileName(file.FileName)} ({format}, {file.Length:N0} bytes)",
            CreatedAt = DateTime.UtcNow,
        };
        if (!await db.BackboneWeights.AnyAsync(w => w.Sha256 == sha256, cancellation))
            db.BackboneWeights.Add(new BackboneWeights { Sha256 = sha256, Data = weights, CreatedAt = row.CreatedAt });
        db.Backbones.Add(row);
        try
        {
            await db.SaveChangesAsync(cancellation);
        }
        catch (DbUpdateException e) when (e.InnerException is Npgsql.PostgresException { SqlState: Npgsql.PostgresErrorCodes.UniqueViolation })
        {
            return Problems.Conflict("Registered concurrently", $"id: '{id}' (or its weights) was registered by another request at the same moment; send the request again.");
        }
        logger.LogInformation("Registered backbone {Backbone}: {Architecture}, {Parameters:N0} parameters from {Source}", id, row.Architecture, parameters, row.Source);
        return TypedResults.Created($"/api/backbones/{id}", ToResponse(row));
    }

    internal static async Task<Results<NoContent, ProblemHttpResult>> Delete(string id, TransferDbContext db, BackboneRegistry backbones, CancellationToken cancellation)
    {
        if (BackboneCatalog.BuiltIn.Contains(id)) return Problems.Conflict("Built-in backbone", $"id: '{id}' is built in and cannot be deleted.");
        // Exclusive against job creations naming this backbone (they hold it shared): the counts below see their jobs.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellation);
        await RowLocks.AdvisoryAsync(db, RowLocks.Backbone(id), shared: false, cancellation);
        var row = await db.Backbones.FirstOrDefaultAsync(b => b.Id == id, cancellation);
        if (row is null) return NotFound(id);
        // Backbones serve every tenant: count every tenant's models and jobs.
        var models = await db.Models.IgnoreQueryFilters().CountAsync(m => m.Backbone == id, cancellation);
        var jobs = await db.TrainingJobs.IgnoreQueryFilters().CountAsync(j => j.Backbone == id && (j.Status == JobStatus.Queued || j.Status == JobStatus.Running), cancellation);
        if (models + jobs > 0)
            return Problems.Conflict("Backbone in use", $"id: '{id}' is used by {models} model(s) and {jobs} unfinished job(s); delete those models and let the jobs end first.");
        db.Backbones.Remove(row);
        await db.SaveChangesAsync(cancellation);
        await db.ImageFeatures.Where(f => f.BackboneId == id).ExecuteDeleteAsync(cancellation);
        if (!await db.Backbones.AnyAsync(b => b.WeightsSha256 == row.WeightsSha256, cancellation))
            await db.BackboneWeights.Where(w => w.Sha256 == row.WeightsSha256).ExecuteDeleteAsync(cancellation);
        await transaction.CommitAsync(cancellation);
        await backbones.ForgetAsync(id);
        return TypedResults.NoContent();
    }

    /// <summary>Reads, checks and converts an uploaded file: the canonical weights, the parameter count and the format it was in.</summary>
    private static (byte[] Weights, long Parameters, WeightsFormat Format) Import(BackboneArchitecture architecture, Stream stream, long maxUnpackedBytes)
    {
        var format = StateDictFile.Detect(stream);
        var stateDict = StateDictFile.Read(stream, format, maxUnpackedBytes);
        try
        {
            using var network = WeightsImport.Load(architecture, stateDict);
            return (BackboneCatalog.SaveWeights(network), network.parameters().Sum(p => p.numel()), format);
        }
        finally
        {
            foreach (var tensor in stateDict.Values) tensor.Dispose();
        }
    }

    private static (PreprocessingSpec? Spec, string? Problem) MergePreprocessing(PreprocessingSpec defaults, string json)
    {
        PreprocessingRequest? request;
        try
        {
            request = JsonSerializer.Deserialize<PreprocessingRequest>(json, JsonSerializerOptions.Web);
        }
        catch (JsonException e)
        {
            return (null, $"preprocessing is not valid JSON: {e.Message}");
        }
        if (request is null) return (defaults, null);
        return (defaults with
        {
            InputSize = request.InputSize ?? defaults.InputSize,
            ResizeTo = request.ResizeTo ?? (request.InputSize is { } size ? (int)Math.Round(size * 256.0 / 224) : defaults.ResizeTo),
            ChannelOrder = request.ChannelOrder?.ToUpperInvariant() ?? defaults.ChannelOrder,
            ChannelMean = request.Mean ?? defaults.ChannelMean,
            ChannelStd = request.Std ?? defaults.ChannelStd,
            Scale = request.Scale ?? defaults.Scale,
        }, null);
    }

    private static BackboneResponse BuiltIn(Backbone backbone) => new(backbone.Id, backbone.Architecture.Name, backbone.Architecture.Description,
        backbone.Preprocessor.Spec.InputSize, backbone.FeatureSize, backbone.Stages, backbone.Preprocessor.Spec, backbone.ParameterCount,
        "built in: the ImageNet ResNet18 of the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18 0.23.1 (ONNX)", null,
        backbone.Id == BackboneCatalog.ResNet18ImageNet, null);

    private static BackboneResponse ToResponse(RegisteredBackbone row)
    {
        var architecture = BackboneArchitecture.Find(row.Architecture)!;
        return new BackboneResponse(row.Id, architecture.Name, architecture.Description, row.Preprocessing.InputSize, architecture.FeatureSize, architecture.Stages,
            row.Preprocessing, row.ParameterCount, row.Source, Convert.ToHexStringLower(row.WeightsSha256), false, row.CreatedAt);
    }

    private static ProblemHttpResult NotFound(string id) =>
        TypedResults.Problem($"id: no backbone is '{id}'; GET /api/backbones lists them.", statusCode: StatusCodes.Status404NotFound, title: "Backbone not found");

    [GeneratedRegex("^[a-z0-9][a-z0-9._-]{0,99}$")]
    private static partial Regex IdPattern();
}
