using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace TransferApi.Training;

public static partial class TorchRuntime
{
    /// <summary>
    /// Native settings libtorch's math libraries read once, at their first use: this runs when the training core is
    /// first touched, before any of its libtorch calls.
    /// <list type="bullet">
    /// <item>MKL_CBWR=COMPATIBLE: MKL's results otherwise depend on the buffers' memory alignment, so the same
    /// training could differ in the last bit between two runs (measured on an AMD EPYC: a validation loss 1 ulp
    /// apart).</item>
    /// <item>ONEDNN_MAX_CPU_ISA=SSE41 on AMD processors: on an AMD EPYC VM (family 26, which reports no cache sizes)
    /// libtorch 2.10's oneDNN gave wrong convolutions with its AVX-512 kernels (MobileNetV2 folded against unfolded
    /// 0.058 apart, ResNet18 probabilities 0.009 from ONNX Runtime's) and crashed the process on ResNet-50 with its
    /// AVX2 and AVX-512 kernels; its SSE4.1 kernels agree to 1e-7 and run. Intel processors keep AVX-512 and AMX,
    /// which gave right answers.</item>
    /// </list>
    /// A value the operator set in the environment is kept.
    /// </summary>
#pragma warning disable CA2255 // The core must set these before libtorch's first use, whoever hosts it.
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void PrepareNativeLibraries()
    {
        if (!OperatingSystem.IsLinux())
            return;
        SetIfUnset("MKL_CBWR", "COMPATIBLE");
        if (IsAmd())
            SetIfUnset("ONEDNN_MAX_CPU_ISA", "SSE41");
    }

    /// <summary>True on an AMD x86 processor (CPUID vendor "AuthenticAMD").</summary>
    public static bool IsAmd()
    {
        if (!X86Base.IsSupported)
            return false;
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        Span<int> vendor = [ebx, edx, ecx];
        return MemoryMarshal.AsBytes(vendor).SequenceEqual("AuthenticAMD"u8);
    }

    /// <summary>The native environment (what libtorch's getenv reads), not only .NET's copy of it.</summary>
    private static void SetIfUnset(string name, string value)
    {
        if (Environment.GetEnvironmentVariable(name) is { Length: > 0 })
            return;
        Environment.SetEnvironmentVariable(name, value);
        _ = NativeSetEnv(name, value, 0);
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int NativeSetEnv(string name, string value, int overwrite);

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
