using System.Threading.Channels;
using TransferApi.Options;
using TransferApi.Services;
using TransferApi.Training.Inference;

namespace TransferApi.Features.Models;

/// <summary>
/// Dynamic batching for one model, as Triton does it: predictions queued by concurrent requests go through
/// the network together, up to <see cref="ServingOptions.MaxBatchSize"/> images, waiting at most
/// <see cref="ServingOptions.MaxQueueDelay"/> for company. Passes run on the process's one
/// <see cref="InferenceThread"/>, so parallel requests never oversubscribe libtorch's threads.
/// </summary>
public sealed class PredictionBatcher : IDisposable
{
    private sealed record Pending(float[] Decoded, int Count, TaskCompletionSource<ImageScores[]> Done);

    private readonly Channel<Pending> queue = Channel.CreateUnbounded<Pending>(
        new UnboundedChannelOptions { SingleReader = true }
    );
    private readonly ImageClassifier classifier;
    private readonly ServingOptions options;
    private readonly InferenceThread inference;
    private readonly Telemetry telemetry;
    private long forwardPasses;
    private long imagesPredicted;

    public PredictionBatcher(
        ImageClassifier classifier,
        ServingOptions options,
        InferenceThread inference,
        Telemetry telemetry
    )
    {
        (this.classifier, this.options, this.inference, this.telemetry) = (classifier, options, inference, telemetry);
        // Runs until retired; it answers every request's task itself, so nothing awaits the loop.
        _ = Task.Run(RunAsync);
    }

    public ImageClassifier Classifier => classifier;

    /// <summary>Forward passes run and images answered so far: their ratio is the mean batch size.</summary>
    public (long ForwardPasses, long Images) Statistics =>
        (Interlocked.Read(ref forwardPasses), Interlocked.Read(ref imagesPredicted));

    /// <summary>Queues <paramref name="count"/> images decoded by <see cref="ImageClassifier.Decode"/>; false once
    /// retired.</summary>
    public bool TryEnqueue(float[] decoded, int count, out Task<ImageScores[]> scores)
    {
        var pending = new Pending(
            decoded,
            count,
            new TaskCompletionSource<ImageScores[]>(TaskCreationOptions.RunContinuationsAsynchronously)
        );
        scores = pending.Done.Task;
        if (!queue.Writer.TryWrite(pending))
            return false;
        telemetry.PredictQueued.Add(count);
        return true;
    }

    private async Task RunAsync()
    {
        var batch = new List<Pending>();
        while (await queue.Reader.WaitToReadAsync())
        {
            batch.Clear();
            var images = 0L;
            var waitUntil = DateTime.UtcNow + options.MaxQueueDelay;
            while (images < options.MaxBatchSize)
            {
                if (queue.Reader.TryRead(out var next))
                {
                    batch.Add(next);
                    images += next.Count;
                    continue;
                }
                var remaining = waitUntil - DateTime.UtcNow;
                if (remaining <= TimeSpan.Zero)
                    break;
                using var timeout = new CancellationTokenSource(remaining);
                try
                {
                    if (!await queue.Reader.WaitToReadAsync(timeout.Token))
                        break;
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
            if (batch.Count == 0)
                continue;
            // Requests arriving meanwhile queue up for the next batch.
            await inference.RunAsync(() => Forward(batch));
        }
        // Retired: the last requests are answered above; the model goes with the batcher.
        classifier.Dispose();
    }

    private void Forward(List<Pending> batch)
    {
        try
        {
            var count = batch.Sum(p => p.Count);
            telemetry.PredictQueued.Add(-count);
            telemetry.PredictBatchSize.Record(count);
            var decoded = ImageClassifier.Concat(batch.Select(p => p.Decoded).ToList());
            var scores = classifier.Score(decoded, count);
            Interlocked.Increment(ref forwardPasses);
            Interlocked.Add(ref imagesPredicted, scores.Length);
            var offset = 0;
            foreach (var pending in batch)
            {
                pending.Done.TrySetResult(scores[offset..(offset + pending.Count)]);
                offset += pending.Count;
            }
        }
        catch (Exception e)
        {
            foreach (var pending in batch)
                pending.Done.TrySetException(e);
        }
    }

    /// <summary>Retires the batcher: queued requests are still answered, then the model is disposed.</summary>
    public void Dispose() => queue.Writer.TryComplete();
}
