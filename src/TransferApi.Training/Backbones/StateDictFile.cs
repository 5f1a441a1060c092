using System.Collections;
using System.Text;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace TransferApi.Training.Backbones;

public enum WeightsFormat
{
    PyTorch,
    Safetensors,
    TorchSharp,
}

/// <summary>A weights file that cannot be used: unreadable, or its keys or shapes do not fit the architecture (<see
/// cref="Key"/> names the first bad one).</summary>
public sealed class WeightsRejectedException(string message, string? key = null, Exception? inner = null)
    : Exception(message, inner)
{
    public string? Key { get; } = key;
}

/// <summary>
/// Reads a state dict (name to tensor) from the formats people have: PyTorch's <c>torch.save</c> zip (.pt/.pth,
/// through TorchSharp.PyBridge's restricted unpickler, which builds no arbitrary objects), safetensors, and
/// TorchSharp's own <c>Module.save</c> format. The format is recognised from the content, not the file name.
/// </summary>
public static class StateDictFile
{
    public static WeightsFormat Detect(Stream stream)
    {
        Span<byte> head = stackalloc byte[9];
        var start = stream.Position;
        var read = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        stream.Position = start;
        if (read >= 4 && head[0] == (byte)'P' && head[1] == (byte)'K' && head[2] == 3 && head[3] == 4)
            return WeightsFormat.PyTorch;
        // safetensors: an 8-byte little-endian header length, then the JSON header.
        if (read == 9 && head[8] == (byte)'{' && BitConverter.ToUInt64(head[..8]) < (ulong)stream.Length)
            return WeightsFormat.Safetensors;
        return WeightsFormat.TorchSharp;
    }

    /// <summary>The tensors in the file; throws <see cref="WeightsRejectedException"/> when it is not a readable state
    /// dict.</summary>
    /// <param name="maxUnpackedBytes">What a PyTorch zip may unpack to: its tensors are read whole, so a zip bomb must
    /// be refused before.</param>
    public static Dictionary<string, Tensor> Read(Stream stream, WeightsFormat format, long maxUnpackedBytes = 4L << 30)
    {
        try
        {
            if (format == WeightsFormat.PyTorch)
                CheckUnpackedSize(stream, maxUnpackedBytes);
            return format switch
            {
                WeightsFormat.PyTorch => FromPickle(
                    PyTorchUnpickler.UnpickleStateDict(stream, leaveOpen: true, skipTensorRead: false)
                ),
                WeightsFormat.Safetensors => Safetensors.LoadStateDict(stream, leaveOpen: true, keysToKeep: null),
                _ => ReadTorchSharp(stream),
            };
        }
        catch (Exception e) when (e is not WeightsRejectedException and not OutOfMemoryException)
        {
            throw new WeightsRejectedException(
                $"The file could not be read as a {format} state dict: {e.Message}",
                inner: e
            );
        }
    }

    private static void CheckUnpackedSize(Stream stream, long maxUnpackedBytes)
    {
        var start = stream.Position;
        using (
            var zip = new System.IO.Compression.ZipArchive(
                stream,
                System.IO.Compression.ZipArchiveMode.Read,
                leaveOpen: true
            )
        )
        {
            var unpacked = zip.Entries.Sum(e => e.Length);
            if (unpacked > maxUnpackedBytes)
                throw new WeightsRejectedException(
                    $"The PyTorch file unpacks to {unpacked:N0} bytes; the limit is {maxUnpackedBytes:N0}."
                );
        }
        stream.Position = start;
    }

    private static Dictionary<string, Tensor> FromPickle(Hashtable table)
    {
        // Training scripts often save {"state_dict": ...} or {"model": ...} around the weights.
        foreach (var wrapper in new[] { "state_dict", "model" })
            if (table.Count == 1 && table[wrapper] is Hashtable inner)
                table = inner;
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (DictionaryEntry entry in table)
        {
            if (entry.Key is not string key || entry.Value is not Tensor value)
                throw new WeightsRejectedException(
                    "The "
                        + $"PyTorch file holds '{entry.Key}' of type {entry.Value?.GetType().Name ?? "null"}; "
                        + "a state dict (name to tensor) was expected. Save model.state_dict(), not the model.",
                    entry.Key as string
                );
            result[key] = value;
        }
        return result;
    }

    /// <summary>TorchSharp's format: LEB128 count, then per entry a length-prefixed name, dtype, rank, dims and raw
    /// bytes.</summary>
    private static Dictionary<string, Tensor> ReadTorchSharp(Stream stream)
    {
        using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        var count = ReadLeb128(reader);
        if (count is < 0 or > 100_000)
            throw new WeightsRejectedException("The file is not a TorchSharp state dict (implausible entry count).");
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            var name = reader.ReadString();
            var type = (ScalarType)ReadLeb128(reader);
            var rank = ReadLeb128(reader);
            if (rank is < 0 or > 8)
                throw new WeightsRejectedException($"'{name}' has an implausible rank {rank}.", name);
            var shape = new long[rank];
            for (var d = 0; d < rank; d++)
                shape[d] = ReadLeb128(reader);
            var elementSize = type switch
            {
                ScalarType.Float32 or ScalarType.Int32 => 4,
                ScalarType.Float64 or ScalarType.Int64 => 8,
                ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
                ScalarType.Byte or ScalarType.Int8 or ScalarType.Bool => 1,
                _ => throw new WeightsRejectedException($"'{name}' has an unsupported element type {type}.", name),
            };
            var bytes = shape.Aggregate(1L, (n, d) => d < 0 ? long.MaxValue : checked(n * d)) * elementSize;
            if (bytes > stream.Length - stream.Position)
                throw new WeightsRejectedException($"'{name}' claims more data than the file holds.", name);
            var data = reader.ReadBytes((int)bytes);
            var value = empty(shape, type);
            value.bytes = data;
            result[name] = value;
        }
        return result;
    }

    private static long ReadLeb128(BinaryReader reader)
    {
        long value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            var b = reader.ReadByte();
            value |= (long)(b & 0x7f) << shift;
            if ((b & 0x80) == 0)
                return value;
        }
        throw new WeightsRejectedException("The file is not a TorchSharp state dict (bad number encoding).");
    }
}
