using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Training;

namespace TransferApi.Services;

/// <summary>
/// The one OS thread that runs every prediction's forward pass, one at a time. libtorch's intra-op threads
/// (OpenMP) belong to the thread that calls in: passes issued from ever-changing thread-pool threads pay for
/// new thread teams and leave idle ones spinning, and parallel passes would oversubscribe the cores.
/// </summary>
public sealed class InferenceThread : IDisposable
{
    private readonly BlockingCollection<Action> work = [];
    private readonly Thread thread;

    public InferenceThread(IOptions<WorkerOptions> worker)
    {
        var threads = worker.Value.EffectiveTorchThreads;
        thread = new Thread(() =>
        {
            TorchRuntime.SetThreads(threads);
            foreach (var item in work.GetConsumingEnumerable())
                item();
        })
        {
            IsBackground = true,
            Name = "inference",
        };
        thread.Start();
    }

    public async Task<T> RunAsync<T>(Func<T> function)
    {
        T result = default!;
        // A statement lambda: an expression lambda would be a Func<T> and call this overload again.
        await RunAsync(() =>
        {
            result = function();
        });
        return result;
    }

    public Task RunAsync(Action action)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (work.IsAddingCompleted)
            return Task.FromException(
                new ObjectDisposedException(nameof(InferenceThread), "The service is shutting down.")
            );
        work.Add(() =>
        {
            try
            {
                action();
                done.SetResult();
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        });
        return done.Task;
    }

    public void Dispose()
    {
        work.CompleteAdding();
        thread.Join();
        work.Dispose();
    }
}
