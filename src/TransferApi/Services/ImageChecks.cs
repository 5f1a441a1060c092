using System.Security.Cryptography;
using TransferApi.Training.Imaging;

namespace TransferApi.Services;

/// <summary>An uploaded image after its check: its header and working copy, or why it was refused; its content hash
/// (the feature cache's key) either way.</summary>
public readonly record struct CheckedImage(
    ImageHeader? Header,
    byte[]? WorkingCopy,
    byte[] Sha256,
    ImageRejectedException? Error
);

/// <summary>Checks uploaded images before they are stored: limits, a full decode, SHA-256.</summary>
public static class ImageChecks
{
    /// <summary>Decoding dominates an upload: checks a batch on every core, answers in the batch's order.</summary>
    public static CheckedImage[] CheckAll(
        IReadOnlyList<byte[]> images,
        ImageLimits limits,
        CancellationToken cancellation
    )
    {
        var checks = new CheckedImage[images.Count];
        Parallel.For(0, images.Count, new ParallelOptions { CancellationToken = cancellation }, k =>
        {
            var hash = SHA256.HashData(images[k]);
            try
            {
                var (header, workingCopy) = ImageReader.Validate(images[k], limits);
                checks[k] = new CheckedImage(header, workingCopy, hash, null);
            }
            catch (ImageRejectedException e)
            {
                checks[k] = new CheckedImage(null, null, hash, e);
            }
        });
        return checks;
    }

    /// <summary>An image over the pixel limits refuses the whole upload (413) rather than being listed as
    /// rejected: the client must shrink it.</summary>
    public static void ThrowIfOverLimits(CheckedImage check, string entry)
    {
        if (check.Error is { ExceedsLimits: true } error)
            throw new DomainException(ErrorKind.LimitExceeded, "Image too large", $"file: '{entry}': {error.Message}.");
    }

    /// <summary>Consecutive groups of at most <paramref name="count"/> images and about <paramref name="bytes"/>
    /// bytes: what an upload holds in memory between two database round trips.</summary>
    public static IEnumerable<List<T>> Batches<T>(IEnumerable<T> images, Func<T, long> size, int count, long bytes)
    {
        var batch = new List<T>();
        long total = 0;
        foreach (var image in images)
        {
            batch.Add(image);
            total += size(image);
            if (batch.Count >= count || total >= bytes)
            {
                yield return batch;
                (batch, total) = ([], 0);
            }
        }
        if (batch.Count > 0)
            yield return batch;
    }
}
