using System.Runtime.InteropServices;
using TransferApi.Options;
using TransferApi.Training;

namespace TransferApi.Services;

/// <summary>
/// Sets up the thread a job (training, data set health) runs on. On Linux it gets a lower scheduling priority
/// (<see cref="WorkerOptions.JobNice"/>) before its first libtorch call, so libtorch's OpenMP team and the decode
/// worker it creates inherit it: when a prediction in the same process wants the cores, the kernel gives them to
/// the prediction, and when none does the job has them all (nice only matters under contention).
/// </summary>
public static partial class JobThreads
{
    private static bool unavailable = !OperatingSystem.IsLinux();

    /// <summary>Call first on a job's own thread (it cannot be undone: an unprivileged thread can only lower its
    /// priority).</summary>
    public static void Prepare(WorkerOptions worker)
    {
        LowerPriority(worker.JobNice);
        TorchRuntime.SetThreads(worker.EffectiveTorchThreads);
    }

    /// <summary>The calling thread's nice value raised to <paramref name="nice"/>; false where that is not
    /// possible (not Linux, or 0).</summary>
    public static bool LowerPriority(int nice)
    {
        if (unavailable || nice <= 0)
            return false;
        try
        {
            // PRIO_PROCESS with a thread id: Linux applies it to that thread alone.
            return SetPriority(0, (uint)GetThreadId(), nice) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            unavailable = true;
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "setpriority")]
    private static partial int SetPriority(int which, uint who, int priority);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetThreadId();
}
