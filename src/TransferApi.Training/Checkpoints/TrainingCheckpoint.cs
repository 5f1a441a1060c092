using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using TorchSharp.Modules;

namespace TransferApi.Training.Checkpoints;

public enum TrainingPhase
{
    Head = 1,
    FineTuning = 2,
}

/// <summary>The best epoch so far of the running phase. Null weights mean "the checkpoint's current weights".</summary>
/// <param name="Score">Early stopping's monitored score (higher is better) in the head phase; the validation loss in
/// fine-tuning.</param>
public sealed record BestSoFar(int Epoch, double Score, int SinceBest, byte[]? HeadWeights, byte[]? TailWeights);

/// <summary>How the head phase ended, carried through fine-tuning checkpoints.</summary>
public sealed record HeadPhaseOutcome(int Epochs, int BestEpoch, bool StoppedEarly);

/// <summary>An epoch stopped between batches (a worker shutting down): what its remaining batches continue
/// from.</summary>
/// <param name="BatchesDone">Batches of the epoch already applied to the checkpoint's weights and optimizer.</param>
/// <param name="LossSum">Their summed training loss (weighted by batch size), for the epoch's mean.</param>
/// <param name="LearningRate">The learning rate the epoch started with, as its metrics report it.</param>
public sealed record EpochInProgress(int BatchesDone, double LossSum, double LearningRate);

/// <summary>
/// A point a job can continue from as if it had never stopped: after its last completed epoch
/// (<see cref="Epoch"/>), or part way through the next one (<see cref="InProgress"/>); the current weights, the
/// optimizer's state, the best epoch so far and every completed epoch's metrics. The shuffling of each epoch
/// derives from (seed, epoch), dropout masks from (seed, epoch, batch), and learning-rate schedules are
/// replayed, so no generator or scheduler state is needed. <see cref="Fingerprint"/> ties it to one job's
/// images, options and backbone.
/// </summary>
public sealed record TrainingCheckpoint(
    string Fingerprint,
    TrainingPhase Phase,
    int Epoch,
    IReadOnlyList<EpochMetrics> Metrics,
    byte[] HeadWeights,
    byte[]? TailWeights,
    byte[] OptimizerState,
    BestSoFar Best,
    HeadPhaseOutcome? HeadPhase,
    EpochInProgress? InProgress = null
)
{
    // Version 1 had no epoch in progress; it still reads.
    private const int FormatVersion = 2;

    /// <summary>Identifies the job's inputs: backbone, options and every image's label, split and content, in
    /// order.</summary>
    public static string FingerprintOf(string backboneId, IReadOnlyList<LabeledImage> images, TrainingOptions options)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(backboneId));
        hash.AppendData(JsonSerializer.SerializeToUtf8Bytes(options));
        foreach (var image in images)
        {
            hash.AppendData(Encoding.UTF8.GetBytes($"\n{image.Label}\t{image.Split}\t"));
            hash.AppendData(image.ContentKey is { } key ? Encoding.UTF8.GetBytes(key) : SHA256.HashData(image.Bytes));
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    public byte[] ToBytes()
    {
        // Sized up front: a fine-tuning checkpoint is hundreds of megabytes, and a growing stream would allocate
        // (and leave for the collector) about twice that in discarded buffers.
        var arrays = new[] { HeadWeights, TailWeights, OptimizerState, Best.HeadWeights, Best.TailWeights }.Sum(a =>
            (long?)a?.Length ?? 0
        );
        using var stream = new MemoryStream((int)Math.Min(int.MaxValue, arrays + 64L * Metrics.Count + 1024));
        using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(FormatVersion);
            writer.Write(Fingerprint);
            writer.Write((int)Phase);
            writer.Write(Epoch);
            writer.Write(Metrics.Count);
            foreach (var m in Metrics)
            {
                writer.Write(m.Epoch);
                writer.Write(m.TrainLoss);
                WriteNullable(writer, m.ValLoss);
                WriteNullable(writer, m.ValAccuracy);
                writer.Write(m.LearningRate);
            }
            WriteBytes(writer, HeadWeights);
            WriteBytes(writer, TailWeights);
            WriteBytes(writer, OptimizerState);
            writer.Write(Best.Epoch);
            writer.Write(Best.Score);
            writer.Write(Best.SinceBest);
            WriteBytes(writer, Best.HeadWeights);
            WriteBytes(writer, Best.TailWeights);
            writer.Write(HeadPhase is not null);
            if (HeadPhase is not null)
            {
                writer.Write(HeadPhase.Epochs);
                writer.Write(HeadPhase.BestEpoch);
                writer.Write(HeadPhase.StoppedEarly);
            }
            writer.Write(InProgress is not null);
            if (InProgress is not null)
            {
                writer.Write(InProgress.BatchesDone);
                writer.Write(InProgress.LossSum);
                writer.Write(InProgress.LearningRate);
            }
        }
        return stream.ToArray();
    }

    /// <exception cref="InvalidDataException">The bytes are not a checkpoint of this format.</exception>
    public static TrainingCheckpoint FromBytes(byte[] bytes)
    {
        try
        {
            using var reader = new BinaryReader(new MemoryStream(bytes, writable: false), Encoding.UTF8);
            var version = reader.ReadInt32();
            if (version is < 1 or > FormatVersion)
                throw new InvalidDataException("Unknown training checkpoint format.");
            var fingerprint = reader.ReadString();
            var phase = (TrainingPhase)reader.ReadInt32();
            var epoch = reader.ReadInt32();
            var metrics = Enumerable
                .Range(0, reader.ReadInt32())
                .Select(_ => new EpochMetrics(
                    reader.ReadInt32(),
                    reader.ReadDouble(),
                    ReadNullable(reader),
                    ReadNullable(reader),
                    reader.ReadDouble()
                ))
                .ToList();
            var (head, tail, optimizer) = (ReadBytes(reader)!, ReadBytes(reader), ReadBytes(reader)!);
            var best = new BestSoFar(
                reader.ReadInt32(),
                reader.ReadDouble(),
                reader.ReadInt32(),
                ReadBytes(reader),
                ReadBytes(reader)
            );
            var headPhase = reader.ReadBoolean()
                ? new HeadPhaseOutcome(reader.ReadInt32(), reader.ReadInt32(), reader.ReadBoolean())
                : null;
            var inProgress =
                version >= 2 && reader.ReadBoolean()
                    ? new EpochInProgress(reader.ReadInt32(), reader.ReadDouble(), reader.ReadDouble())
                    : null;
            return new TrainingCheckpoint(
                fingerprint,
                phase,
                epoch,
                metrics,
                head,
                tail,
                optimizer,
                best,
                headPhase,
                inProgress
            );
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException("Truncated training checkpoint.", e);
        }
    }

    /// <summary>The optimizer's complete state (moments, step counts, learning rates) in TorchSharp's own
    /// format.</summary>
    internal static byte[] SaveOptimizer(OptimizerHelper optimizer)
    {
        // Adam keeps two moments per parameter: sized for them up front.
        var parameterBytes = optimizer.parameters().Sum(p => p.NumberOfElements * p.ElementSize);
        using var stream = new MemoryStream((int)Math.Min(int.MaxValue, 2 * parameterBytes + 65536));
        using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
            optimizer.save_state_dict(writer);
        return stream.ToArray();
    }

    internal static void LoadOptimizer(OptimizerHelper optimizer, byte[] state)
    {
        using var reader = new BinaryReader(new MemoryStream(state, writable: false));
        optimizer.load_state_dict(reader);
    }

    private static void WriteNullable(BinaryWriter writer, double? value)
    {
        writer.Write(value.HasValue);
        if (value.HasValue)
            writer.Write(value.Value);
    }

    private static double? ReadNullable(BinaryReader reader) => reader.ReadBoolean() ? reader.ReadDouble() : null;

    private static void WriteBytes(BinaryWriter writer, byte[]? bytes)
    {
        writer.Write(bytes?.Length ?? -1);
        if (bytes is not null)
            writer.Write(bytes);
    }

    private static byte[]? ReadBytes(BinaryReader reader)
    {
        var length = reader.ReadInt32();
        if (length < 0)
            return null;
        var bytes = reader.ReadBytes(length);
        return bytes.Length == length ? bytes : throw new EndOfStreamException();
    }
}
