using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace TransferApi.Training.FineTuning;

/// <summary>Where fine-tuning kept the activation entering its first trained stage, for every image.</summary>
public enum ActivationStorage
{
    Memory,
    Spilled,
    Recomputed,
}

/// <summary>What to do with activations that do not fit the memory budget.</summary>
/// <remarks>
/// <see cref="Auto"/> spills to a temporary file when its disk has room, else recomputes. Spilling was measured
/// far cheaper (docs/configuration.md: an epoch reads the file back at disk or page-cache speed, where
/// recomputing decodes every image and runs the frozen prefix again).
/// </remarks>
public enum ActivationOverflow
{
    Auto,
    Spill,
    Recompute,
}

/// <param name="MemoryBytes">Most bytes of activations a fine-tuning run keeps in memory.</param>
/// <param name="SpillDirectory">Where spilled activations go (default: the system's temporary directory).</param>
public sealed record ActivationBudget(
    long MemoryBytes = long.MaxValue,
    ActivationOverflow Overflow = ActivationOverflow.Auto,
    string? SpillDirectory = null
)
{
    public static ActivationBudget Unbounded { get; } = new();
}

/// <summary>How a fine-tuning run kept its activations (reported on the job).</summary>
/// <param name="Bytes">The activations of all its images (and augmented views) together.</param>
public sealed record ActivationUsage(ActivationStorage Storage, long Bytes, long BudgetBytes);

/// <summary>
/// The activations entering the first fine-tuned stage, one row per image (and augmented view), appended once in
/// order while the frozen prefix runs, then read back in any order every epoch. Kept in memory within the budget;
/// beyond it, in a temporary file or recomputed from the images, so a worker's memory does not grow with the data.
/// </summary>
public abstract class ActivationStore : IDisposable
{
    private const long SpillHeadroomBytes = 256L << 20;

    protected ActivationStore(long count, long[] rowShape)
    {
        Count = count;
        RowShape = rowShape;
        RowBytes = BytesPerRow(rowShape);
    }

    public long Count { get; }
    public long[] RowShape { get; }
    public long RowBytes { get; }
    public long Bytes => Count * RowBytes;
    public abstract ActivationStorage Storage { get; }

    /// <summary>Appends the next rows [B, ...RowShape] (float32) in order.</summary>
    public abstract void Append(Tensor rows);

    /// <summary>The activations of the given rows (an int64 tensor of row numbers) as a new tensor.</summary>
    public abstract Tensor Rows(Tensor rows);

    public virtual void Dispose() => GC.SuppressFinalize(this);

    private static long BytesPerRow(long[] rowShape) =>
        rowShape.Aggregate((long)sizeof(float), (bytes, size) => bytes * size);

    /// <summary>
    /// A store for <paramref name="count"/> rows of <paramref name="rowShape"/>, in memory when they fit the budget.
    /// </summary>
    /// <param name="recompute">Computes the given rows again (for <see cref="ActivationStorage.Recomputed"/>).</param>
    public static ActivationStore Create(
        long count,
        long[] rowShape,
        ActivationBudget budget,
        Func<long[], Tensor> recompute
    )
    {
        var bytes = count * BytesPerRow(rowShape);
        if (bytes <= budget.MemoryBytes)
            return new InMemory(count, rowShape);
        var directory = budget.SpillDirectory ?? Path.GetTempPath();
        var spill = budget.Overflow switch
        {
            ActivationOverflow.Spill => true,
            ActivationOverflow.Recompute => false,
            _ => new DriveInfo(Path.GetFullPath(directory)).AvailableFreeSpace
                >= bytes + bytes / 10 + SpillHeadroomBytes,
        };
        return spill ? new Spilled(count, rowShape, directory) : new Recomputed(count, rowShape, recompute);
    }

    private sealed class InMemory(long count, long[] rowShape) : ActivationStore(count, rowShape)
    {
        private readonly Tensor all = empty([count, .. rowShape]).DetachFromDisposeScope();
        private long written;

        public override ActivationStorage Storage => ActivationStorage.Memory;

        public override void Append(Tensor rows)
        {
            using var slot = all.narrow(0, written, rows.shape[0]);
            slot.copy_(rows);
            written += rows.shape[0];
        }

        public override Tensor Rows(Tensor rows) => all.index_select(0, rows);

        public override void Dispose()
        {
            all.Dispose();
            base.Dispose();
        }
    }

    /// <summary>Rows in a temporary file (deleted when closed), read back row by row through the page cache.</summary>
    private sealed class Spilled : ActivationStore
    {
        private readonly SafeFileHandle file;
        private long written;

        public Spilled(long count, long[] rowShape, string directory)
            : base(count, rowShape)
        {
            Directory.CreateDirectory(directory);
            file = File.OpenHandle(
                Path.Combine(directory, $"transferapi-activations-{Guid.NewGuid():N}.f32"),
                FileMode.CreateNew,
                FileAccess.ReadWrite,
                FileShare.None,
                FileOptions.DeleteOnClose
            );
        }

        public override ActivationStorage Storage => ActivationStorage.Spilled;

        public override void Append(Tensor rows)
        {
            using var contiguous = rows.to_type(ScalarType.Float32).contiguous();
            RandomAccess.Write(file, contiguous.bytes, written * RowBytes);
            written += rows.shape[0];
        }

        public override Tensor Rows(Tensor rows)
        {
            var numbers = rows.data<long>().ToArray();
            var result = empty([numbers.Length, .. RowShape]);
            var target = result.bytes;
            for (var k = 0; k < numbers.Length; k++)
            {
                var row = target.Slice((int)(k * RowBytes), (int)RowBytes);
                for (var read = 0; read < row.Length; )
                {
                    var n = RandomAccess.Read(file, row[read..], numbers[k] * RowBytes + read);
                    if (n == 0)
                        throw new EndOfStreamException($"Spilled activation row {numbers[k]} is incomplete.");
                    read += n;
                }
            }
            return result;
        }

        public override void Dispose()
        {
            file.Dispose();
            base.Dispose();
        }
    }

    private sealed class Recomputed(long count, long[] rowShape, Func<long[], Tensor> recompute)
        : ActivationStore(count, rowShape)
    {
        public override ActivationStorage Storage => ActivationStorage.Recomputed;

        public override void Append(Tensor rows) { }

        public override Tensor Rows(Tensor rows) => recompute(rows.data<long>().ToArray());
    }
}
