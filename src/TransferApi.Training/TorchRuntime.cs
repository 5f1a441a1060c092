using static TorchSharp.torch;

namespace TransferApi.Training;

public static class TorchRuntime
{
    /// <summary>
    /// Sets libtorch's intra-op thread pool. Call once at start-up, before work starts: libtorch's threads
    /// collapse under oversubscription, so workers x threads must stay within the machine's cores.
    /// </summary>
    public static void SetThreads(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        set_num_threads(threads);
    }
}
