using System.Threading.Channels;
using TransferApi.Options;
using TransferApi.Training.Training;
using static TorchSharp.torch;

namespace TransferApi.Features.Models;

/// <summary>
/// Dynamic batching for one model, as Triton does it: predictions queued by concurrent requests go through
/// the network together, up to <see cref="ServingOptions.MaxBatchSize"/> images, waiting at most
/// <see cref="ServingOptions.MaxQueueDelay"/> for company. Passes run on the process's one
/// <see cref="InferenceThread"/>, so parallel requests never oversubscribe libtorch's threads.
/// </summary>
public sealed class PredictionBatcher : IDisposable
{
    private sealed record Pending(Tensor Pixels, TaskCompletionSource<float[][]> Done);

    private readonly Channel<Pending> queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ImageClassifier classifier;
    private readonly ServingOptions options;
    private readonly InferenceThread inference;
    private readonly Task loop;
    private long forwardPasses;
    private long imagesPredicted;

    public PredictionBatcher(ImageClassifier classifier, ServingOptions options, InferenceThread inference)
    {
        (this.classifier, this.options, this.inference) = (classifier, options, inference);
        loop = Task.Run(RunAsync);
    }

    public ImageClassifier Classifier => classifier;

    /// <summary>Forward passes run and images answered so far: their ratio is the mean batch size.</summary>
    public (long ForwardPasses, long Images) Statistics => (Interlocked.Read(ref forwardPasses), Interlocked.Read(ref imagesPredicted));

    /// <summary>Queues preprocessed images (the batcher takes ownership of <paramref name="pixels"/>); false once retired.</summary>
    public bool TryEnqueue(Tensor pixels, out Task<float[][]> probabilities)
    {
        var pending = new Pending(pixels, new TaskCompletionSource<float[][]>(TaskCreationOptions.RunContinuationsAsynchronously));
        probabilities = pending.Done.Task;
        return queue.Writer.TryWrite(pending);
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
                    images += next.Pixels.shape[0];
                    continue;
                }
                var remaining = waitUntil - DateTime.UtcNow;
                if (remaining <= TimeSpan.Zero) break;
                using var timeout = new CancellationTokenSource(remaining);
                try
                {
                    if (!await queue.Reader.WaitToReadAsync(timeout.Token)) break;
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
            if (batch.Count == 0) continue;
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
            float[][] probabilities;
            if (batch.Count == 1)
            {
                probabilities = classifier.Probabilities(batch[0].Pixels);
            }
            else
            {
                using var pixels = cat(batch.Select(p => p.Pixels).ToList(), 0);
                probabilities = classifier.Probabilities(pixels);
            }
            Interlocked.Increment(ref forwardPasses);
            Interlocked.Add(ref imagesPredicted, probabilities.Length);
            var offset = 0;
            foreach (var pending in batch)
            {
                var count = (int)pending.Pixels.shape[0];
                pending.Done.TrySetResult(probabilities[offset..(offset + count)]);
                offset += count;
            }
        }
        catch (Exception e)
        {
            foreach (var pending in batch) pending.Done.TrySetException(e);
        }
        finally
        {
            foreach (var pending in batch) pending.Pixels.Dispose();
        }
    }

    /// <summary>Retires the batcher: queued requests are still answered, then the model is disposed.</summary>
    public void Dispose() => queue.Writer.TryComplete();

    /// <summary>For tests and shutdown: completes when the retired batcher has answered everything and released the model.</summary>
    public Task Completion => loop;
}
