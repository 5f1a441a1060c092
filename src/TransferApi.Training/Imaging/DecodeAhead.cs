using System.Diagnostics;

namespace TransferApi.Training.Imaging;

/// <summary>A batch of images decoded to the network's planar input (<see
/// cref="ImagePreprocessor.DecodePlanar"/>).</summary>
public sealed record DecodedBatch(float[] Pixels, int Count);

/// <summary>
/// A bounded producer/consumer pipeline: batches are read and decoded on decoder threads while the caller's thread runs
/// the forward pass of the batch before, so decoding and libtorch overlap instead of taking turns. It starts with one
/// decoder and adds more, up to a limit, while measured decoding is slower than the caller's forward pass.
/// </summary>
public static class DecodeAhead
{
    /// <summary>
    /// The most decoder threads a pass may grow to beside libtorch's: the cores libtorch leaves, or half the cores,
    /// whichever is more (at least one). On a small machine libtorch and one decoder already fill the cores, and more
    /// threads only take turns; on a large one a bfloat16 network outruns one decoder (docs/benchmarks.md).
    /// </summary>
    public static int MaxDecoders(int torchThreads) =>
        Math.Max(1, Math.Max(Environment.ProcessorCount - torchThreads, Environment.ProcessorCount / 2));

    /// <summary>
    /// Decoders needed so that decoding keeps up with the forward pass: a batch's decode time over its forward
    /// time, rounded up, within 1..<paramref name="maxDecoders"/>.
    /// </summary>
    public static int DecodersToKeepUp(double decodeSeconds, double forwardSeconds, int maxDecoders) =>
        forwardSeconds <= 0
            ? maxDecoders
            : (int)Math.Clamp(Math.Ceiling(decodeSeconds / forwardSeconds), 1, Math.Max(1, maxDecoders));

    /// <summary>
    /// The batches of <paramref name="read"/>, in order, decoded with <paramref name="transformsOf"/>(batch index)
    /// by up to <paramref name="maxDecoders"/> threads while the caller consumes earlier ones; at most one batch per
    /// decoder waits decoded. A bad image, a failed read or a cancellation surfaces at the batch where it happened;
    /// leaving early stops the decoders and waits for them.
    /// </summary>
    public static IEnumerable<DecodedBatch> Batches(
        ImagePreprocessor preprocessor,
        Func<CancellationToken, IEnumerable<IReadOnlyList<byte[]>>> read,
        Func<int, IReadOnlyList<ViewTransform?>?> transformsOf,
        int maxDecoders,
        CancellationToken cancellation
    )
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var pipeline = new Pipeline(preprocessor, transformsOf, read(stop.Token), stop.Token);
        using var wake = stop.Token.Register(pipeline.WakeAll);
        var decoders = new List<Thread>();
        // Threads created by the caller's thread: on Linux they inherit its scheduling priority, which the service
        // lowers for job threads so that predictions go first.
        void AddDecoder()
        {
            var thread = new Thread(pipeline.Decode) { IsBackground = true, Name = "decode-ahead" };
            decoders.Add(thread);
            thread.Start();
        }
        try
        {
            AddDecoder();
            for (var index = 0; ; index++)
            {
                if (!pipeline.TryTake(index, cancellation, out var batch))
                    break;
                var forward = Stopwatch.StartNew();
                yield return batch;
                pipeline.Forwarded(forward.Elapsed.TotalSeconds);
                if (decoders.Count < pipeline.DecodersNeeded(maxDecoders))
                    AddDecoder();
            }
        }
        finally
        {
            stop.Cancel();
            // Left early, the consumer's own exception is the one that matters (or a decoder's was rethrown).
            foreach (var thread in decoders)
                thread.Join();
            pipeline.Dispose();
        }
    }

    /// <summary>The state decoders and the consumer share, under <see cref="gate"/>; decoders read the input one at
    /// a time under <see cref="reading"/>, so a slow read never holds up the consumer.</summary>
    private sealed class Pipeline(
        ImagePreprocessor preprocessor,
        Func<int, IReadOnlyList<ViewTransform?>?> transformsOf,
        IEnumerable<IReadOnlyList<byte[]>> source,
        CancellationToken stop
    ) : IDisposable
    {
        private readonly object gate = new();
        private readonly object reading = new();
        private readonly IEnumerator<IReadOnlyList<byte[]>> batches = source.GetEnumerator();
        private readonly Dictionary<int, DecodedBatch> decoded = [];
        private int nextToRead;
        private int consumed;
        private int decoders;
        private int? end;
        private (int Index, Exception Error)? failure;
        private double decodeSeconds;
        private int decodeCount;
        private double forwardSeconds;
        private int forwardCount;

        /// <summary>A decoder thread: reads the next batch, decodes it, until the input ends, something fails or the
        /// pass stops.</summary>
        public void Decode()
        {
            lock (gate)
                decoders++;
            try
            {
                while (TryRead(out var index, out var images))
                {
                    var clock = Stopwatch.StartNew();
                    float[] pixels;
                    try
                    {
                        pixels = preprocessor.DecodePlanar(images, transformsOf(index), maxThreads: 1);
                    }
                    catch (Exception e)
                    {
                        Fail(index, e);
                        return;
                    }
                    lock (gate)
                    {
                        decodeSeconds += clock.Elapsed.TotalSeconds;
                        decodeCount++;
                        decoded[index] = new DecodedBatch(pixels, images.Count);
                        Monitor.PulseAll(gate);
                    }
                }
            }
            finally
            {
                lock (gate)
                {
                    decoders--;
                    Monitor.PulseAll(gate);
                }
            }
        }

        private bool TryRead(out int index, out IReadOnlyList<byte[]> images)
        {
            images = [];
            lock (reading)
            {
                lock (gate)
                {
                    // At most one decoded batch waiting per decoder: memory stays bounded.
                    while (!Stopped && nextToRead - consumed > decoders)
                        Monitor.Wait(gate);
                    index = nextToRead;
                    if (Stopped)
                        return false;
                }
                try
                {
                    if (!batches.MoveNext())
                    {
                        lock (gate)
                        {
                            end = index;
                            Monitor.PulseAll(gate);
                        }
                        return false;
                    }
                }
                catch (Exception e)
                {
                    Fail(index, e);
                    return false;
                }
                images = batches.Current;
                lock (gate)
                    nextToRead++;
                return true;
            }
        }

        /// <summary>Waits for batch <paramref name="index"/>; false at the end of the input. Throws what the reader
        /// or a decoder threw at that batch, as thrown.</summary>
        public bool TryTake(int index, CancellationToken cancellation, out DecodedBatch batch)
        {
            lock (gate)
            {
                while (true)
                {
                    cancellation.ThrowIfCancellationRequested();
                    if (decoded.Remove(index, out batch!))
                    {
                        consumed = index + 1;
                        Monitor.PulseAll(gate);
                        return true;
                    }
                    if (failure is { } f && f.Index <= index)
                        System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(f.Error);
                    if (end is { } last && index >= last)
                        return false;
                    Monitor.Wait(gate);
                }
            }
        }

        public void Forwarded(double seconds)
        {
            lock (gate)
            {
                forwardSeconds += seconds;
                forwardCount++;
            }
        }

        /// <summary>Decoders that keep up with the forward pass as measured so far (one before any
        /// measurement).</summary>
        public int DecodersNeeded(int maxDecoders)
        {
            lock (gate)
                return decodeCount == 0 || forwardCount == 0
                    ? 1
                    : DecodersToKeepUp(decodeSeconds / decodeCount, forwardSeconds / forwardCount, maxDecoders);
        }

        public void WakeAll()
        {
            lock (gate)
                Monitor.PulseAll(gate);
        }

        public void Dispose() => batches.Dispose();

        private bool Stopped => stop.IsCancellationRequested || failure is not null || end is not null;

        private void Fail(int index, Exception error)
        {
            lock (gate)
            {
                // The earliest failure is the one the consumer reaches first.
                if (failure is null || index < failure.Value.Index)
                    failure = (index, error);
                Monitor.PulseAll(gate);
            }
        }
    }
}
