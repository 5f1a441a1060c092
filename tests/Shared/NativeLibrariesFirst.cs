using System.Runtime.CompilerServices;

namespace TransferApi.TestSupport;

internal static class NativeLibrariesFirst
{
    /// <summary>Tests may call TorchSharp before any training-core type: touching the core first runs its native
    /// settings (TorchRuntime) before libtorch's math libraries read them.</summary>
#pragma warning disable CA2255 // A test assembly is a host: it must prepare libtorch as the service does.
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Prepare() => _ = Training.TorchRuntime.IsAmd();
}
