using Microsoft.EntityFrameworkCore;
using Npgsql;
using NpgsqlTypes;
using TransferApi.Persistence;
using TransferApi.Training;

namespace TransferApi.Jobs;

/// <summary>The one writer of <see cref="ImageFeatures"/>: features a backbone computed, kept under the image's content
/// hash for every later job and health report.</summary>
public static class FeatureCache
{
    /// <summary>
    /// Stores a batch's features in one round trip and one commit (an Npgsql batch runs as one implicit transaction):
    /// one INSERT and one commit per image cost a WAL flush each, beside the forward pass, on the same cores.
    /// </summary>
    public static async Task StoreAsync(
        TransferDbContext db,
        string backboneId,
        IReadOnlyList<ComputedFeatures> computed,
        CancellationToken cancellation = default
    )
    {
        if (computed.Count == 0)
            return;
        await db.Database.OpenConnectionAsync(cancellation);
        try
        {
            await using var batch = new NpgsqlBatch((NpgsqlConnection)db.Database.GetDbConnection());
            var now = DateTime.UtcNow;
            foreach (var f in computed)
                batch.BatchCommands.Add(
                    new NpgsqlBatchCommand(
                        // Another job may have cached the same image meanwhile: the first one stays.
                        """
                        INSERT INTO image_features ("BackboneId", "Sha256", "Values", "CreatedAt")
                        VALUES ($1, $2, $3, $4)
                        ON CONFLICT DO NOTHING
                        """
                    )
                    {
                        Parameters =
                        {
                            new() { Value = backboneId, NpgsqlDbType = NpgsqlDbType.Varchar },
                            new() { Value = Convert.FromHexString(f.ContentKey), NpgsqlDbType = NpgsqlDbType.Bytea },
                            new() { Value = f.Features, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Real },
                            new() { Value = now, NpgsqlDbType = NpgsqlDbType.TimestampTz },
                        },
                    }
                );
            await batch.ExecuteNonQueryAsync(cancellation);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }
}
