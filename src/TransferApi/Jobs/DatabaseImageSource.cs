using System.Threading.Channels;
using Microsoft.EntityFrameworkCore;
using TransferApi.Persistence;
using TransferApi.Training;
using TransferApi.Training.Imaging;

namespace TransferApi.Jobs;

/// <summary>
/// A job's image bytes read from PostgreSQL a batch at a time, while the backbone works on the batch before: at most
/// <see cref="Prefetch"/> batches wait in memory, so a job's memory does not grow with its data set. The training
/// thread only reads from a channel; its own context does the reading.
/// </summary>
/// <param name="imageIds">The job's images in the order the trainer numbers them: <see cref="DatasetImage"/> ids, or
/// <see cref="BatchPredictionImage"/> ids with <paramref name="uploadedForScoring"/>.</param>
/// <param name="workingCopies">Reads a large photo's <see cref="DatasetImage.WorkingCopy"/> instead of the photo: true
/// when the backbone's preprocessing finds enough pixels in one (<see cref="WorkingCopy.Serves"/>).</param>
/// <param name="uploadedForScoring">The images are a batch prediction's uploaded zip, not a data set's.</param>
public sealed class DatabaseImageSource(
    IDbContextFactory<TransferDbContext> dbFactory,
    IReadOnlyList<Guid> imageIds,
    bool workingCopies,
    bool uploadedForScoring = false
) : IImageSource
{
    private const int Prefetch = 2;

    public IEnumerable<IReadOnlyList<byte[]>> Batches(
        IReadOnlyList<int> images,
        int batchSize,
        CancellationToken cancellation
    )
    {
        if (images.Count == 0)
            yield break;
        var batches = Channel.CreateBounded<IReadOnlyList<byte[]>>(
            new BoundedChannelOptions(Prefetch) { SingleReader = true, SingleWriter = true }
        );
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var reader = Task.Run(() => ReadAsync(images, batchSize, batches.Writer, stop.Token), CancellationToken.None);
        try
        {
            // The consumer (a job's decode worker) waits here while the reader fetches the next batches.
            while (batches.Reader.WaitToReadAsync(cancellation).AsTask().GetAwaiter().GetResult())
            while (batches.Reader.TryRead(out var batch))
                yield return batch;
        }
        finally
        {
            stop.Cancel();
            reader.ContinueWith(static _ => { }, TaskScheduler.Default).GetAwaiter().GetResult();
        }
    }

    private async Task ReadAsync(
        IReadOnlyList<int> images,
        int batchSize,
        ChannelWriter<IReadOnlyList<byte[]>> batches,
        CancellationToken cancellation
    )
    {
        try
        {
            await using var db = await dbFactory.CreateDbContextAsync(cancellation);
            foreach (var chunk in images.Chunk(batchSize))
            {
                var ids = chunk.Select(i => imageIds[i]).ToArray();
                var bytes = uploadedForScoring
                    ? await db
                        .BatchPredictionImages.AsNoTracking()
                        .Where(i => ids.Contains(i.Id))
                        .Select(i => new { i.Id, Data = workingCopies ? i.WorkingCopy ?? i.Data : i.Data })
                        .ToDictionaryAsync(i => i.Id, i => i.Data, cancellation)
                    : await db
                        .DatasetImages.AsNoTracking()
                        .Where(i => ids.Contains(i.Id))
                        .Select(i => new { i.Id, Data = workingCopies ? i.WorkingCopy ?? i.Data : i.Data })
                        .ToDictionaryAsync(i => i.Id, i => i.Data, cancellation);
                if (ids.Where(id => !bytes.ContainsKey(id)).ToList() is { Count: > 0 } gone)
                    throw new TrainingInputException(
                        $"Image(s) {string.Join(", ", gone)} "
                            + $"were deleted from the data set while the job was reading them; start the job again."
                    );
                await batches.WriteAsync(ids.Select(id => bytes[id]).ToList(), cancellation);
            }
            batches.Complete();
        }
        catch (Exception e)
        {
            batches.Complete(e);
        }
    }
}
