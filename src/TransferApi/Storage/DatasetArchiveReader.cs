using System.IO.Compression;
using System.Security.Cryptography;
using TransferApi.Options;
using TransferApi.Training.Imaging;
using TransferApi.Training.Training;

namespace TransferApi.Storage;

/// <summary>An upload refused whole; <see cref="StatusCode"/> is the 4xx to answer with.</summary>
public sealed class UploadRejectedException(int statusCode, string title, string detail) : Exception(detail)
{
    public int StatusCode { get; } = statusCode;
    public string Title { get; } = title;
}

public sealed record ArchiveImage(string Entry, string Label, DataSplit Split, ImageHeader Header, byte[] Sha256, byte[] Data);

public sealed record ArchiveRejection(string Entry, string Reason);

public sealed record DatasetArchive(IReadOnlyList<ArchiveImage> Images, IReadOnlyList<ArchiveRejection> Rejected)
{
    public IReadOnlyList<string> Labels => Images.Select(i => i.Label).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
}

/// <summary>
/// Reads a folder-per-class zip (optionally under train/ val/ test/) as untrusted input: hostile structure
/// (escaping paths, links, sizes over the limits, oversized images) refuses the whole upload; files that are
/// merely not images are listed as rejected; operating-system junk is skipped silently.
/// </summary>
public static class DatasetArchiveReader
{
    private static readonly Dictionary<string, DataSplit> SplitFolders = new(StringComparer.OrdinalIgnoreCase)
    {
        ["train"] = DataSplit.Train, ["training"] = DataSplit.Train,
        ["val"] = DataSplit.Validation, ["valid"] = DataSplit.Validation, ["validation"] = DataSplit.Validation,
        ["test"] = DataSplit.Test,
    };

    private static readonly HashSet<string> JunkFiles = new(StringComparer.OrdinalIgnoreCase) { "Thumbs.db", "desktop.ini", "ehthumbs.db" };

    public static DatasetArchive Read(Stream zip, UploadOptions limits)
    {
        ZipArchive archive;
        try
        {
            archive = new ZipArchive(zip, ZipArchiveMode.Read, leaveOpen: true);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or ArgumentOutOfRangeException)
        {
            // Very short non-zip files surface as an out-of-range seek inside ZipArchive.
            throw new UploadRejectedException(400, "The file is not a readable zip archive",
                e is InvalidDataException ? $"file: not a readable zip archive ({e.Message})" : "file: too short to be a zip archive.");
        }
        using (archive)
        {
            if (archive.Entries.Count > limits.MaxEntries)
                throw new UploadRejectedException(413, "Too many entries", $"file: the archive has {archive.Entries.Count} entries; the limit is {limits.MaxEntries}.");

            var files = new List<(ZipArchiveEntry Entry, string[] Segments)>();
            long declaredTotal = 0;
            foreach (var entry in archive.Entries)
            {
                var segments = CheckPath(entry);
                if (IsDirectory(entry) || IsJunk(segments)) continue;
                if (entry.Length > limits.MaxEntryBytes)
                    throw new UploadRejectedException(413, "Archive entry too large", $"file: entry '{entry.FullName}' is {entry.Length:N0} bytes; the limit is {limits.MaxEntryBytes:N0}.");
                declaredTotal += entry.Length;
                if (declaredTotal > limits.MaxTotalBytes)
                    throw new UploadRejectedException(413, "Archive too large", $"file: the archive expands to more than {limits.MaxTotalBytes:N0} bytes.");
                files.Add((entry, segments));
            }

            var rootToStrip = CommonWrapperFolder(files.Select(f => f.Segments).ToList());
            var images = new List<ArchiveImage>();
            var rejected = new List<ArchiveRejection>();
            var seen = new Dictionary<string, ArchiveImage>(StringComparer.Ordinal);
            var imageLimits = limits.ImageLimits;
            long actualTotal = 0;
            foreach (var (entry, allSegments) in files)
            {
                var segments = allSegments.AsSpan(rootToStrip);
                var split = DataSplit.Unassigned;
                if (segments.Length > 2 && SplitFolders.TryGetValue(segments[0], out var named))
                {
                    split = named;
                    segments = segments[1..];
                }
                if (segments.Length < 2)
                {
                    rejected.Add(new(entry.FullName, "not inside a class folder (expected <class>/<image> or <split>/<class>/<image>)"));
                    continue;
                }
                var label = segments[0].Trim();
                var data = ReadBounded(entry, limits.MaxEntryBytes);
                // Declared sizes were checked above, but an archive can lie: count what really came out.
                actualTotal += data.Length;
                if (actualTotal > limits.MaxTotalBytes)
                    throw new UploadRejectedException(413, "Archive too large", $"file: the archive expands to more than {limits.MaxTotalBytes:N0} bytes.");
                ImageHeader header;
                try
                {
                    header = ImageReader.ReadHeader(data, imageLimits);
                    using var decoded = ImageReader.Decode(data, imageLimits);
                }
                catch (ImageRejectedException e) when (e.ExceedsLimits)
                {
                    throw new UploadRejectedException(413, "Image too large", $"file: entry '{entry.FullName}': {e.Message}.");
                }
                catch (ImageRejectedException e)
                {
                    rejected.Add(new(entry.FullName, e.Message));
                    continue;
                }
                var hash = SHA256.HashData(data);
                var key = Convert.ToHexString(hash);
                if (seen.TryGetValue(key, out var first))
                {
                    rejected.Add(new(entry.FullName, first.Label == label
                        ? $"duplicate of '{first.Entry}' (stored once)"
                        : $"the same image is already labelled '{first.Label}' ('{first.Entry}')"));
                    continue;
                }
                var image = new ArchiveImage(entry.FullName, label, split, header, hash, data);
                seen.Add(key, image);
                images.Add(image);
            }
            return new DatasetArchive(images, rejected);
        }
    }

    /// <summary>Refuses entries that could escape an extraction folder or point elsewhere.</summary>
    private static string[] CheckPath(ZipArchiveEntry entry)
    {
        var name = entry.FullName;
        var segments = name.Split('/', '\\', StringSplitOptions.RemoveEmptyEntries);
        if (name.StartsWith('/') || name.StartsWith('\\') || name.Contains(':', StringComparison.Ordinal) || name.Contains('\0', StringComparison.Ordinal)
            || segments.Any(s => s is ".." or "."))
            throw new UploadRejectedException(400, "Unsafe path in archive", $"file: entry '{name}' has an absolute or escaping path.");
        const int unixFileTypeMask = 0xF000, unixSymlink = 0xA000;
        if (((entry.ExternalAttributes >> 16) & unixFileTypeMask) == unixSymlink)
            throw new UploadRejectedException(400, "Symbolic link in archive", $"file: entry '{name}' is a symbolic link.");
        return segments;
    }

    private static bool IsDirectory(ZipArchiveEntry entry) => entry.FullName.EndsWith('/') || entry.FullName.EndsWith('\\');

    private static bool IsJunk(string[] segments) =>
        segments.Any(s => s.StartsWith('.') || s.Equals("__MACOSX", StringComparison.OrdinalIgnoreCase)) || JunkFiles.Contains(segments[^1]);

    /// <summary>A single top folder wrapping everything (zip -r of a folder) is not a class: skip it.</summary>
    private static int CommonWrapperFolder(List<string[]> paths)
    {
        if (paths.Count == 0 || paths.Any(p => p.Length < 3)) return 0;
        var first = paths[0][0];
        if (SplitFolders.ContainsKey(first)) return 0;
        return paths.All(p => string.Equals(p[0], first, StringComparison.Ordinal)) ? 1 : 0;
    }

    /// <summary>Reads an entry, never trusting its declared size (zip bombs lie).</summary>
    private static byte[] ReadBounded(ZipArchiveEntry entry, long maxBytes)
    {
        try
        {
            using var source = entry.Open();
            using var buffer = new MemoryStream((int)Math.Min(entry.Length, maxBytes));
            var chunk = new byte[81920];
            int read;
            while ((read = source.Read(chunk)) > 0)
            {
                if (buffer.Length + read > maxBytes)
                    throw new UploadRejectedException(413, "Archive entry too large", $"file: entry '{entry.FullName}' expands beyond {maxBytes:N0} bytes.");
                buffer.Write(chunk, 0, read);
            }
            return buffer.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new UploadRejectedException(400, "Corrupt archive", $"file: entry '{entry.FullName}' cannot be read ({e.Message}).");
        }
    }
}
