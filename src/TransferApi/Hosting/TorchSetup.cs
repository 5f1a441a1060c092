using Microsoft.Extensions.Options;
using TransferApi.Options;
using TransferApi.Services;
using TransferApi.Training;

namespace TransferApi.Hosting;

public static class TorchSetup
{
    /// <summary>Sets libtorch's threads before any worker thread exists (threads created later inherit it).</summary>
    public static void ConfigureTorch(this WebApplication app)
    {
        var worker = app.Services.GetRequiredService<IOptions<WorkerOptions>>().Value;
        TorchRuntime.SetThreads(worker.EffectiveTorchThreads);
        app.Logger.LogInformation(
            "libtorch uses {Threads} thread(s) per job, {Jobs} concurrent job(s) on {Cores} core(s); "
                + "MKL_CBWR={Cbwr}, ONEDNN_MAX_CPU_ISA={Isa} (AMD processor: {Amd})",
            worker.EffectiveTorchThreads,
            worker.ConcurrentJobs,
            Environment.ProcessorCount,
            Environment.GetEnvironmentVariable("MKL_CBWR") ?? "unset",
            Environment.GetEnvironmentVariable("ONEDNN_MAX_CPU_ISA") ?? "unset",
            TorchRuntime.IsAmd()
        );
        var roles = app.Services.GetRequiredService<IOptions<ServiceOptions>>().Value.Roles;
        if (
            roles.HasFlag(ServiceRoles.Worker)
            && worker.MallocMmapThresholdBytes > 0
            && NativeMemory.SetMmapThreshold(worker.MallocMmapThresholdBytes)
        )
            app.Logger.LogInformation(
                "glibc mmap threshold fixed at {Bytes:N0} bytes for training's large buffers",
                worker.MallocMmapThresholdBytes
            );
    }
}
