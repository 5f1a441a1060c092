using System.Security.Cryptography;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using TransferApi.Options;
using TransferApi.Persistence;
using TransferApi.Services;
using TransferApi.Training.Backbones;
using TransferApi.Training.Imaging;

namespace TransferApi.Features.Backbones;

/// <summary>A weights file offered for registration, already checked for its form fields.</summary>
public sealed record WeightsUpload(
    BackboneArchitecture Architecture,
    Stream Content,
    string FileName,
    long Length,
    string? Id,
    PreprocessingSpec Preprocessing
);

/// <summary>The stored backbone, and whether this import created it (false: the same one was already there).</summary>
public sealed record ImportedBackbone(RegisteredBackbone Row, bool Created);

/// <summary>
/// Registers a backbone from an uploaded weights file: reads and checks it against the architecture (on the
/// inference thread: it is libtorch work), converts it to the canonical form, and stores the weights once per
/// content hash. Refusals are <see cref="DomainException"/>s.
/// </summary>
public sealed class BackboneImport(
    TransferDbContext db,
    InferenceThread inference,
    IOptions<UploadOptions> uploads,
    ILogger<BackboneImport> logger
)
{
    public async Task<ImportedBackbone> ImportAsync(WeightsUpload upload, CancellationToken cancellation)
    {
        var limit = uploads.Value.MaxBackboneWeightsBytes;
        if (upload.Length > limit)
            throw new DomainException(
                ErrorKind.LimitExceeded,
                "Weights file too large",
                $"file: {upload.Length:N0} bytes; the limit is {limit:N0}."
            );
        var (weights, parameters, format) = await ConvertAsync(upload, 2 * limit);
        var sha256 = SHA256.HashData(weights);
        var id = upload.Id ?? $"{upload.Architecture.Name.Replace('_', '-')}-{Convert.ToHexStringLower(sha256)[..12]}";

        var existing = await db.Backbones.AsNoTracking().FirstOrDefaultAsync(b => b.Id == id, cancellation);
        if (existing is not null)
            return new ImportedBackbone(SameOrConflict(existing, upload, sha256), Created: false);
        var row = new RegisteredBackbone
        {
            Id = id,
            Architecture = upload.Architecture.Name,
            Preprocessing = upload.Preprocessing,
            WeightsSha256 = sha256,
            ParameterCount = parameters,
            Source = $"uploaded {Path.GetFileName(upload.FileName)} ({format}, {upload.Length:N0} bytes)",
            CreatedAt = DateTime.UtcNow,
        };
        await StoreAsync(row, weights, cancellation);
        logger.LogInformation(
            "Registered backbone {Backbone}: {Architecture}, {Parameters:N0} parameters from {Source}",
            id,
            row.Architecture,
            parameters,
            row.Source
        );
        return new ImportedBackbone(row, Created: true);
    }

    private async Task<(byte[] Weights, long Parameters, WeightsFormat Format)> ConvertAsync(
        WeightsUpload upload,
        long maxUnpackedBytes
    )
    {
        try
        {
            return await inference.RunAsync(() => ReadWeights(upload.Architecture, upload.Content, maxUnpackedBytes));
        }
        catch (WeightsRejectedException e)
        {
            throw new DomainException(ErrorKind.Unusable, "Weights do not fit the architecture", $"file: {e.Message}");
        }
    }

    /// <summary>Reads, checks and converts the file: the canonical weights, the parameter count and its
    /// format.</summary>
    private static (byte[] Weights, long Parameters, WeightsFormat Format) ReadWeights(
        BackboneArchitecture architecture,
        Stream stream,
        long maxUnpackedBytes
    )
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
            foreach (var tensor in stateDict.Values)
                tensor.Dispose();
        }
    }

    /// <summary>Registering the same weights again under the same id is a no-op; anything else under it
    /// conflicts.</summary>
    private static RegisteredBackbone SameOrConflict(
        RegisteredBackbone existing,
        WeightsUpload upload,
        byte[] sha256
    ) =>
        existing.Architecture == upload.Architecture.Name
        && existing.WeightsSha256.SequenceEqual(sha256)
        && existing.Preprocessing == upload.Preprocessing
            ? existing
            : throw new DomainException(
                ErrorKind.Conflict,
                "Backbone id taken",
                $"id: '{existing.Id}' is already a backbone with other weights or preprocessing; choose another id or "
                    + "delete it first."
            );

    private async Task StoreAsync(RegisteredBackbone row, byte[] weights, CancellationToken cancellation)
    {
        if (!await db.BackboneWeights.AnyAsync(w => w.Sha256 == row.WeightsSha256, cancellation))
            db.BackboneWeights.Add(
                new BackboneWeights
                {
                    Sha256 = row.WeightsSha256,
                    Data = weights,
                    CreatedAt = row.CreatedAt,
                }
            );
        db.Backbones.Add(row);
        try
        {
            await db.SaveChangesAsync(cancellation);
        }
        catch (DbUpdateException e)
            when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            throw new DomainException(
                ErrorKind.Conflict,
                "Registered concurrently",
                $"id: '{row.Id}' (or its weights) was registered by another request at the same moment; send the "
                    + "request again."
            );
        }
    }
}
