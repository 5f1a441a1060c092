using System.Runtime.InteropServices;

namespace TransferApi.Services;

/// <summary>
/// glibc's allocator, which libtorch allocates its tensors from. A training job frees hundreds of megabytes of
/// tensors when it ends, but glibc keeps freed memory in its arenas for reuse, and each job's fresh training
/// thread could draw another arena (up to 8 per core): resident memory grew about 90 MB per job without levelling
/// off. Two arenas (MALLOC_ARENA_MAX=2, set by the container image and run.sh: it must be in the environment at
/// process start) and a trim after each job keep it flat (docs/benchmarks.md). A no-op where glibc is not the C
/// library.
/// </summary>
public static partial class NativeMemory
{
    private static bool unavailable = !OperatingSystem.IsLinux();

    /// <summary>Returns free memory in every arena to the system (glibc's malloc_trim): true when some was
    /// returned.</summary>
    public static bool Trim()
    {
        if (unavailable)
            return false;
        try
        {
            return MallocTrim(0) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // musl (Alpine) and other C libraries have no malloc_trim.
            unavailable = true;
            return false;
        }
    }

    /// <summary>
    /// Fixes glibc's mmap threshold: allocations of at least <paramref name="bytes"/> get pages of their own, returned
    /// when freed. By default the threshold follows the largest freed block up to 32 MB, so a training job's many
    /// multi-megabyte activation and gradient buffers land in the arenas, which fragment (docs/benchmarks.md).
    /// </summary>
    public static bool SetMmapThreshold(int bytes)
    {
        if (unavailable)
            return false;
        try
        {
            return Mallopt(MmapThresholdParameter, bytes) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            unavailable = true;
            return false;
        }
    }

    // M_MMAP_THRESHOLD in glibc's malloc.h.
    private const int MmapThresholdParameter = -3;

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int Mallopt(int parameter, int value);

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);
}
