using System.Collections.Concurrent;

namespace TransferApi.Training.Imaging;

/// <summary>A batch of images decoded to the network's planar input (<see
/// cref="ImagePreprocessor.DecodePlanar"/>).</summary>
public sealed record DecodedBatch(float[] Pixels, int Count);

/// <summary>
/// A bounded producer/consumer pipeline: batches are read and decoded on a worker thread while the caller's thread runs
/// the forward pass of the batch before, one batch ahead, so decoding and libtorch overlap instead of taking turns.
/// </summary>
public static class DecodeAhead
{
    /// <summary>
    /// Decoder threads beside libtorch's: the cores libtorch leaves (at least one), since libtorch's threads collapse
    /// when the cores are oversubscribed. Not measured against more decoders: with a bfloat16 network on many cores
    /// one decoder can be the limit (docs/benchmarks.md).
    /// </summary>
    public static int DecoderThreads(int torchThreads) => Math.Max(1, Environment.ProcessorCount - torchThreads);

    /// <summary>
    /// The batches of <paramref name="read"/>, decoded with <paramref name="transformsOf"/>(batch index) by
    /// <paramref name="decoders"/> threads while the caller consumes the previous one. A bad image, a failed read
    /// or a cancellation surfaces at the batch where it happened; leaving early stops the reader and waits for it.
    /// </summary>
    public static IEnumerable<DecodedBatch> Batches(
        ImagePreprocessor preprocessor,
        Func<CancellationToken, IEnumerable<IReadOnlyList<byte[]>>> read,
        Func<int, IReadOnlyList<ViewTransform?>?> transformsOf,
        int decoders,
        CancellationToken cancellation
    )
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        using var ready = new BlockingCollection<DecodedBatch>(boundedCapacity: 1);
        var producer = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // A thread of its own, created by the caller's: on Linux it inherits the caller's scheduling priority, which
        // the service lowers for job threads so that predictions go first.
        var thread = new Thread(() =>
        {
            try
            {
                var index = 0;
                foreach (var batch in read(stop.Token))
                {
                    var pixels = preprocessor.DecodePlanar(batch, transformsOf(index++), maxThreads: decoders);
                    ready.Add(new DecodedBatch(pixels, batch.Count), stop.Token);
                }
                producer.SetResult();
            }
            catch (Exception e)
            {
                producer.SetException(e);
            }
            finally
            {
                ready.CompleteAdding();
            }
        })
        {
            IsBackground = true,
            Name = "decode-ahead",
        };
        thread.Start();
        try
        {
            foreach (var batch in ready.GetConsumingEnumerable(cancellation))
                yield return batch;
            // The reader's failure, if any, as thrown: an ImageRejectedException stays one.
            producer.Task.GetAwaiter().GetResult();
        }
        finally
        {
            stop.Cancel();
            // Left early, the consumer's own exception is the one that matters (or the reader's was rethrown).
            thread.Join();
        }
    }
}
