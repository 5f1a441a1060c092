using TransferApi.Training.Imaging;

namespace TransferApi.Training.Tests;

/// <summary>The feature pass's decode pipeline: same pixels in the same order, failures where they happened, and a
/// reader that stops when the consumer does.</summary>
[Collection(BackboneCollection.Name)]
public class DecodeAheadTests(BackboneFixture fixture)
{
    private readonly ImagePreprocessor preprocessor = fixture.Backbone.Preprocessor;
    private readonly List<byte[]> photos = LabeledPhotos.AntsAndBees(5).Select(i => i.Bytes).ToList();

    [Fact]
    public void Batches_come_in_order_with_the_pixels_a_direct_decode_gives()
    {
        var batches = DecodeAhead
            .Batches(preprocessor, _ => photos.Chunk(3), _ => null, maxDecoders: 1, CancellationToken.None)
            .ToList();
        Assert.Equal([3, 3, 3, 1], batches.Select(b => b.Count));
        Assert.Equal(preprocessor.DecodePlanar(photos), batches.SelectMany(b => b.Pixels));
    }

    [Fact]
    public void Decoders_are_added_while_decoding_is_slower_than_the_consumer_and_order_is_kept()
    {
        var threads = new System.Collections.Concurrent.ConcurrentDictionary<int, byte>();
        // A slow decode (the transform callback runs on the decoder thread) against a consumer that does nothing.
        IReadOnlyList<ViewTransform?>? Slow(int index)
        {
            threads.TryAdd(Environment.CurrentManagedThreadId, 0);
            Thread.Sleep(40);
            return null;
        }
        var batches = DecodeAhead
            .Batches(preprocessor, _ => photos.Chunk(1), Slow, maxDecoders: 3, CancellationToken.None)
            .ToList();
        Assert.Equal(preprocessor.DecodePlanar(photos), batches.SelectMany(b => b.Pixels));
        Assert.InRange(threads.Count, 2, 3);
    }

    [Fact]
    public void One_decoder_stays_alone_when_it_keeps_up_with_the_consumer()
    {
        var threads = new System.Collections.Concurrent.ConcurrentDictionary<int, byte>();
        var count = 0;
        foreach (
            var _ in DecodeAhead.Batches(
                preprocessor,
                _ => photos.Chunk(1),
                _ =>
                {
                    threads.TryAdd(Environment.CurrentManagedThreadId, 0);
                    return null;
                },
                maxDecoders: 3,
                CancellationToken.None
            )
        )
        {
            count++;
            Thread.Sleep(100); // a forward pass far slower than decoding one photo
        }
        Assert.Equal(photos.Count, count);
        Assert.Single(threads);
    }

    [Theory]
    [InlineData(0.2, 0.5, 8, 1)] // float32 on 2 cores: one decoder is ahead
    [InlineData(0.2, 0.05, 8, 4)] // bfloat16 on many cores: four keep up
    [InlineData(0.2, 0.01, 8, 8)] // never more than the limit
    [InlineData(0.2, 0, 3, 3)]
    public void Decoders_needed_are_decode_time_over_forward_time_rounded_up(
        double decode,
        double forward,
        int max,
        int expected
    ) => Assert.Equal(expected, DecodeAhead.DecodersToKeepUp(decode, forward, max));

    [Fact]
    public void A_bad_image_surfaces_as_itself_after_the_batches_before_it()
    {
        var images = photos.Take(6).Append([1, 2, 3]).ToList();
        var received = 0;
        var error = Assert.Throws<ImageRejectedException>(() =>
        {
            foreach (var _ in DecodeAhead.Batches(preprocessor, _ => images.Chunk(3), _ => null, 1, default))
                received++;
        });
        Assert.Equal(2, received);
        Assert.Contains("not an image in a supported format", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Leaving_early_stops_the_reader_within_the_batches_held_ahead()
    {
        var read = 0;
        IEnumerable<IReadOnlyList<byte[]>> Endless(CancellationToken stop)
        {
            while (!stop.IsCancellationRequested)
            {
                Interlocked.Increment(ref read);
                yield return photos.Take(2).ToList();
            }
        }
        foreach (var _ in DecodeAhead.Batches(preprocessor, Endless, _ => null, 1, default).Take(3)) { }
        // Returned only after the reader stopped: one batch waiting and one being decoded at most.
        var stopped = Volatile.Read(ref read);
        Assert.InRange(stopped, 3, 5);
        Thread.Sleep(200);
        Assert.Equal(stopped, Volatile.Read(ref read));
    }

    [Fact]
    public void A_cancelled_pass_throws_and_stops_reading()
    {
        using var cancel = new CancellationTokenSource();
        var consumed = 0;
        Assert.ThrowsAny<OperationCanceledException>(() =>
        {
            foreach (var _ in DecodeAhead.Batches(preprocessor, _ => photos.Chunk(1), _ => null, 1, cancel.Token))
            {
                if (++consumed == 2)
                    cancel.Cancel();
            }
        });
        Assert.Equal(2, consumed);
    }
}
