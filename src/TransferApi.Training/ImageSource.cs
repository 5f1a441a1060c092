namespace TransferApi.Training;

/// <summary>
/// Where a job's encoded images come from, a batch at a time, so a run never holds all of a data set's bytes:
/// the service reads them from its database as the backbone consumes them.
/// </summary>
public interface IImageSource
{
    /// <summary>
    /// The bytes of the given images (indices into the job's image list), in order, in batches of at most
    /// <paramref name="batchSize"/>.
    /// </summary>
    IEnumerable<IReadOnlyList<byte[]>> Batches(
        IReadOnlyList<int> images,
        int batchSize,
        CancellationToken cancellation
    );

    /// <summary>Whether it has the bytes of all these images (an image given by its cached features alone has
    /// none, and cannot be augmented).</summary>
    bool HasBytes(IReadOnlyList<int> images) => true;
}

/// <summary>
/// Images whose bytes are already in memory (such as <see cref="LabeledImage.Bytes"/>): tests, tools, small runs.
/// </summary>
public sealed class InMemoryImageSource(IReadOnlyList<byte[]> bytes) : IImageSource
{
    public IEnumerable<IReadOnlyList<byte[]>> Batches(
        IReadOnlyList<int> images,
        int batchSize,
        CancellationToken cancellation
    ) => images.Chunk(batchSize).Select(chunk => (IReadOnlyList<byte[]>)chunk.Select(i => bytes[i]).ToList());

    public bool HasBytes(IReadOnlyList<int> images) => images.All(i => bytes[i].Length > 0);
}
