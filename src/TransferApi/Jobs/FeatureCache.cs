using Microsoft.EntityFrameworkCore;
using TransferApi.Persistence;
using TransferApi.Training;

namespace TransferApi.Jobs;

/// <summary>The one writer of <see cref="ImageFeatures"/>: features a backbone computed, kept under the image's content
/// hash for every later job and health report.</summary>
public static class FeatureCache
{
    public static async Task StoreAsync(
        TransferDbContext db,
        string backboneId,
        IReadOnlyList<ComputedFeatures> computed,
        CancellationToken cancellation = default
    )
    {
        // Another job may have cached the same image meanwhile: the first one stays.
        foreach (var f in computed)
            await db.Database.ExecuteSqlInterpolatedAsync(
                $"""
                INSERT INTO image_features ("BackboneId", "Sha256", "Values", "CreatedAt")
                VALUES ({backboneId}, {Convert.FromHexString(f.ContentKey)}, {f.Features}, {DateTime.UtcNow})
                ON CONFLICT DO NOTHING
                """,
                cancellation
            );
    }
}
