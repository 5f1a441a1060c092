namespace TransferApi.Training.Backbones;

/// <summary>The number format of a backbone's frozen forward passes.</summary>
public enum BackbonePrecision
{
    /// <summary>Measure both at load and keep bfloat16 only where it is faster and agrees.</summary>
    Auto,
    Fp32,
    Bf16,
}

/// <summary>What a backbone runs its frozen forward passes in, and why; rates and agreement when measured.</summary>
/// <param name="Cosine">The lowest cosine similarity between bfloat16 and float32 features of the probe batch.</param>
public sealed record PrecisionChoice(
    BackbonePrecision Chosen,
    string Reason,
    double? Fp32ImagesPerSecond = null,
    double? Bf16ImagesPerSecond = null,
    double? Cosine = null
)
{
    /// <summary>bfloat16 features must agree with float32 ones at least this closely (cosine similarity).</summary>
    public const double MinCosine = 0.999;

    /// <summary>
    /// bfloat16 must beat float32 by this factor: the two rates are measured over a few seconds at most, and a
    /// machine's speed drifts by several percent between rounds (docs/benchmarks.md), so a smaller win is noise.
    /// </summary>
    public const double MinSpeedup = 1.1;

    public static PrecisionChoice Fp32(string reason) => new(BackbonePrecision.Fp32, reason);

    /// <summary>The auto choice from measurements: bfloat16 only when it agrees and is clearly faster.</summary>
    public static PrecisionChoice Decide(double fp32ImagesPerSecond, double bf16ImagesPerSecond, double cosine)
    {
        var (chosen, reason) =
            cosine < MinCosine ? (BackbonePrecision.Fp32, $"bfloat16 features disagree (cosine {cosine:F4})")
            : bf16ImagesPerSecond < MinSpeedup * fp32ImagesPerSecond
                ? (
                    BackbonePrecision.Fp32,
                    $"bfloat16 is not faster ({bf16ImagesPerSecond / fp32ImagesPerSecond:F2}x float32)"
                )
            : (BackbonePrecision.Bf16, $"bfloat16 is {bf16ImagesPerSecond / fp32ImagesPerSecond:F2}x float32");
        return new(chosen, reason, fp32ImagesPerSecond, bf16ImagesPerSecond, cosine);
    }

    /// <summary>Whether the processor has bfloat16 instructions (AMX or AVX-512 BF16); without them libtorch
    /// emulates bfloat16, which is always slower.</summary>
    public static bool ProcessorHasBf16()
    {
        const string cpuInfo = "/proc/cpuinfo";
        if (!File.Exists(cpuInfo))
            return false;
        var flags = File.ReadLines(cpuInfo).FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal));
        return flags is not null
            && flags.Split(' ', StringSplitOptions.RemoveEmptyEntries).Any(f => f is "amx_bf16" or "avx512_bf16");
    }
}
