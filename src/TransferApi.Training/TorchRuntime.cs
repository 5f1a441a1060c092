using static TorchSharp.torch;

namespace TransferApi.Training;

public static class TorchRuntime
{
    /// <summary>
    /// Sets libtorch's intra-op threads. Call it first on every thread that runs libtorch work (the training
    /// thread, the inference thread): OpenMP keeps its thread count per calling thread. Workers x threads must
    /// stay within the machine's cores: libtorch's threads collapse under oversubscription.
    /// </summary>
    public static void SetThreads(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        set_num_threads(threads);
    }
}
