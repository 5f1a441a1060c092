using System.IO.Compression;
using TransferApi.Options;
using TransferApi.Services;
using TransferApi.Training;

namespace TransferApi.Features.Datasets;

/// <summary>One file of the archive that lies in a class folder, with its bytes (read within the limits).</summary>
public sealed record ArchiveFile(string Entry, string? Label, DataSplit Split, bool SplitFromFolder, byte[] Data);

/// <summary>
/// A folder-per-class zip (optionally under train/ val/ test/) read as untrusted input. <see cref="Open"/>
/// checks the whole central directory before any data is read: escaping paths, links, nested archives, entry
/// count, declared sizes and compression ratios refuse the upload. <see cref="ReadFiles"/> then streams one
/// entry at a time, never trusting declared sizes. Operating-system junk is skipped silently.
/// </summary>
public sealed class DatasetArchive : IDisposable
{
    private const int MaxEntryNameLength = 1024;
    private const int MaxLabelLength = 200;
    private const long RatioCheckedAbove = 1024 * 1024;

    /// <summary>Images under this top folder are stored without a label (to be labelled later).</summary>
    public const string UnlabeledFolder = "unlabeled";

    private static readonly Dictionary<string, DataSplit> SplitFolders = new(StringComparer.OrdinalIgnoreCase)
    {
        ["train"] = DataSplit.Train,
        ["training"] = DataSplit.Train,
        ["val"] = DataSplit.Validation,
        ["valid"] = DataSplit.Validation,
        ["validation"] = DataSplit.Validation,
        ["test"] = DataSplit.Test,
    };

    private static readonly HashSet<string> JunkFiles = new(StringComparer.OrdinalIgnoreCase)
    {
        "Thumbs.db",
        "desktop.ini",
        "ehthumbs.db",
        "Icon\r",
    };

    private static readonly HashSet<string> ArchiveExtensions = new(StringComparer.OrdinalIgnoreCase)
    {
        ".zip",
        ".jar",
        ".tar",
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".7z",
        ".rar",
        ".zst",
        ".lz",
        ".lzma",
        ".cab",
        ".iso",
    };

    private readonly ZipArchive zip;
    private readonly UploadOptions limits;
    private readonly List<(ZipArchiveEntry Entry, string[] Segments)> files;
    private readonly int wrapperFolders;
    private readonly bool foldersFixSplits;

    private DatasetArchive(ZipArchive zip, UploadOptions limits, List<(ZipArchiveEntry, string[])> files)
    {
        this.zip = zip;
        this.limits = limits;
        this.files = files;
        wrapperFolders = CommonWrapperFolder(files.Select(f => f.Item2).ToList());
        // A lone train/ folder holds everything and fixes nothing: only val/ or test/ folders define a split.
        foldersFixSplits = files.Any(f => FolderSplit(f.Item2) is DataSplit.Validation or DataSplit.Test);
    }

    public static DatasetArchive Open(Stream stream, UploadOptions limits)
    {
        ZipArchive zip;
        try
        {
            zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or ArgumentOutOfRangeException)
        {
            // Very short non-zip files surface as an out-of-range seek inside ZipArchive.
            throw new DomainException(
                ErrorKind.InvalidInput,
                "The file is not a readable zip archive",
                e is InvalidDataException
                    ? $"file: not a readable zip archive ({e.Message})"
                    : "file: too short to be a zip archive."
            );
        }
        try
        {
            return new DatasetArchive(zip, limits, Scan(zip, limits));
        }
        catch
        {
            zip.Dispose();
            throw;
        }
    }

    private static List<(ZipArchiveEntry, string[])> Scan(ZipArchive zip, UploadOptions limits)
    {
        if (zip.Entries.Count > limits.MaxEntries)
            throw new DomainException(
                ErrorKind.LimitExceeded,
                "Too many entries",
                $"file: the archive has {zip.Entries.Count} entries; the limit is {limits.MaxEntries}."
            );
        var files = new List<(ZipArchiveEntry, string[])>();
        long declaredTotal = 0;
        foreach (var entry in zip.Entries)
        {
            var segments = CheckPath(entry);
            if (IsDirectory(entry) || IsJunk(segments))
                continue;
            if (ArchiveExtensions.Contains(Path.GetExtension(entry.Name)))
                throw new DomainException(
                    ErrorKind.InvalidInput,
                    "Nested archive",
                    $"file: entry '{entry.FullName}' is an archive; upload one flat zip of images."
                );
            if (entry.Length > limits.MaxEntryBytes)
                throw new DomainException(
                    ErrorKind.LimitExceeded,
                    "Archive entry too large",
                    $"file: entry '{entry.FullName}' is {entry.Length:N0} bytes; the limit is "
                        + $"{limits.MaxEntryBytes:N0}."
                );
            if (
                entry.Length > RatioCheckedAbove
                && entry.Length > (long)limits.MaxCompressionRatio * Math.Max(1, entry.CompressedLength)
            )
                throw new DomainException(
                    ErrorKind.LimitExceeded,
                    "Suspicious compression ratio",
                    $"file: entry '{entry.FullName}' expands {entry.Length / Math.Max(1, entry.CompressedLength):N0} "
                        + $"times; the limit is {limits.MaxCompressionRatio} (zip bomb?)."
                );
            declaredTotal += entry.Length;
            if (declaredTotal > limits.MaxTotalBytes)
                throw new DomainException(
                    ErrorKind.LimitExceeded,
                    "Archive too large",
                    $"file: the archive expands to more than {limits.MaxTotalBytes:N0} bytes."
                );
            files.Add((entry, segments));
        }
        return files;
    }

    /// <summary>Every file in archive order: those outside a class folder as a rejection, the others with their
    /// bytes.</summary>
    public IEnumerable<(ArchiveFile? File, string Entry, string? Rejection)> ReadFiles()
    {
        long actualTotal = 0;
        foreach (var (entry, segments) in files)
        {
            var (label, split, fromFolder) = Locate(segments);
            if (label is null && split != DataSplit.Unlabeled)
            {
                yield return (
                    null,
                    entry.FullName,
                    "not inside a class folder (expected <class>/<image>, <split>/<class>/<image> or unlabeled/<image>)"
                );
                continue;
            }
            var data = ReadBounded(entry, limits.MaxEntryBytes);
            // Declared sizes were checked in Open, but an archive can lie: count what really came out.
            actualTotal += data.Length;
            if (actualTotal > limits.MaxTotalBytes)
                throw new DomainException(
                    ErrorKind.LimitExceeded,
                    "Archive too large",
                    $"file: the archive expands to more than {limits.MaxTotalBytes:N0} bytes."
                );
            if (LooksLikeArchive(data))
                throw new DomainException(
                    ErrorKind.InvalidInput,
                    "Nested archive",
                    $"file: entry '{entry.FullName}' is an archive; upload one flat zip of images."
                );
            yield return (new ArchiveFile(entry.FullName, label, split, fromFolder, data), entry.FullName, null);
        }
    }

    private DataSplit FolderSplit(string[] allSegments)
    {
        var segments = allSegments.AsSpan(wrapperFolders);
        return segments.Length > 2 && SplitFolders.TryGetValue(segments[0], out var named)
            ? named
            : DataSplit.Unassigned;
    }

    private (string? Label, DataSplit Split, bool FromFolder) Locate(string[] allSegments)
    {
        var split = FolderSplit(allSegments);
        var segments = allSegments.AsSpan(wrapperFolders + (split == DataSplit.Unassigned ? 0 : 1));
        if (!foldersFixSplits)
            split = DataSplit.Unassigned;
        if (segments.Length < 2)
            return (null, split, false);
        if (string.Equals(segments[0].Trim(), UnlabeledFolder, StringComparison.OrdinalIgnoreCase))
            return (null, DataSplit.Unlabeled, false);
        return (segments[0].Trim(), split, split != DataSplit.Unassigned);
    }

    /// <summary>Refuses entries that could escape an extraction folder, point elsewhere, or not fit the
    /// database.</summary>
    private static string[] CheckPath(ZipArchiveEntry entry)
    {
        var name = entry.FullName;
        var segments = name.Split(['/', '\\'], StringSplitOptions.RemoveEmptyEntries);
        if (
            name.StartsWith('/')
            || name.StartsWith('\\')
            || name.Contains(':', StringComparison.Ordinal)
            || name.Any(char.IsControl)
            || segments.Any(s => s is ".." or ".")
        )
            throw new DomainException(
                ErrorKind.InvalidInput,
                "Unsafe path in archive",
                $"file: entry '{Printable(name)}' has an absolute, escaping or control-character path."
            );
        if (name.Length > MaxEntryNameLength || segments.Any(s => s.Length > MaxLabelLength))
            throw new DomainException(
                ErrorKind.InvalidInput,
                "Path too long",
                $"file: entry '{Printable(name)[..Math.Min(name.Length, 80)]}...' has a path over {MaxEntryNameLength} "
                    + $"characters or a folder name over {MaxLabelLength}."
            );
        const int unixFileTypeMask = 0xF000,
            unixSymlink = 0xA000;
        if (((entry.ExternalAttributes >> 16) & unixFileTypeMask) == unixSymlink)
            throw new DomainException(
                ErrorKind.InvalidInput,
                "Symbolic link in archive",
                $"file: entry '{name}' is a symbolic link."
            );
        return segments;
    }

    private static string Printable(string name) => new(name.Select(c => char.IsControl(c) ? '?' : c).ToArray());

    private static bool IsDirectory(ZipArchiveEntry entry) =>
        entry.FullName.EndsWith('/') || entry.FullName.EndsWith('\\');

    private static bool IsJunk(string[] segments) =>
        segments.Any(s => s.StartsWith('.') || s.Equals("__MACOSX", StringComparison.OrdinalIgnoreCase))
        || JunkFiles.Contains(segments[^1]);

    /// <summary>Magic numbers of zip, gzip, 7z, rar, bzip2 and xz.</summary>
    private static readonly byte[][] ArchiveSignatures =
    [
        [0x50, 0x4B, 0x03, 0x04],
        [0x1F, 0x8B],
        [0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C],
        [0x52, 0x61, 0x72, 0x21],
        [0x42, 0x5A, 0x68],
        [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00],
    ];

    private static bool LooksLikeArchive(byte[] data) =>
        ArchiveSignatures.Any(signature => data.AsSpan().StartsWith(signature));

    /// <summary>A single top folder wrapping everything (zip -r of a folder) is not a class: skip it.</summary>
    private static int CommonWrapperFolder(List<string[]> paths)
    {
        if (paths.Count == 0 || paths.Any(p => p.Length < 3))
            return 0;
        var first = paths[0][0];
        if (SplitFolders.ContainsKey(first))
            return 0;
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
                    throw new DomainException(
                        ErrorKind.LimitExceeded,
                        "Archive entry too large",
                        $"file: entry '{entry.FullName}' expands beyond {maxBytes:N0} bytes."
                    );
                buffer.Write(chunk, 0, read);
            }
            return buffer.ToArray();
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException or IOException)
        {
            throw new DomainException(
                ErrorKind.InvalidInput,
                "Corrupt archive",
                $"file: entry '{entry.FullName}' cannot be read ({e.Message})."
            );
        }
    }

    public void Dispose() => zip.Dispose();
}
