using System.IO.Compression;
using TransferApi.Options;

namespace TransferApi.Services;

/// <summary>One file of an uploaded zip: its entry and its path split into folder names.</summary>
public sealed record UploadedZipFile(ZipArchiveEntry Entry, string[] Segments)
{
    public string Name => Entry.FullName;
}

/// <summary>
/// A zip a client uploaded, read as untrusted input. <see cref="Open"/> checks the whole central directory before any
/// data is read: escaping paths, links, nested archives, entry count, declared sizes and compression ratios refuse
/// the upload. <see cref="Read"/> then reads one entry at a time, never trusting declared sizes. Operating-system
/// junk (.DS_Store, __MACOSX, Thumbs.db…) and folders are left out of <see cref="Files"/>.
/// </summary>
public sealed class UploadedZip : IDisposable
{
    private const int MaxEntryNameLength = 1024;
    private const int MaxSegmentLength = 200;
    private const long RatioCheckedAbove = 1024 * 1024;

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

    private readonly ZipArchive zip;
    private readonly UploadOptions limits;
    private long bytesRead;

    private UploadedZip(ZipArchive zip, UploadOptions limits, IReadOnlyList<UploadedZipFile> files)
    {
        this.zip = zip;
        this.limits = limits;
        Files = files;
    }

    /// <summary>The files, in archive order.</summary>
    public IReadOnlyList<UploadedZipFile> Files { get; }

    public static UploadedZip Open(Stream stream, UploadOptions limits)
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
            return new UploadedZip(zip, limits, Scan(zip, limits));
        }
        catch
        {
            zip.Dispose();
            throw;
        }
    }

    /// <summary>Reads a file's bytes within the limits; the archive's total is counted as it really comes out (an
    /// archive can lie about sizes).</summary>
    public byte[] Read(UploadedZipFile file)
    {
        var data = ReadBounded(file.Entry, limits.MaxEntryBytes);
        bytesRead += data.Length;
        if (bytesRead > limits.MaxTotalBytes)
            throw TooLarge();
        if (ArchiveSignatures.Any(signature => data.AsSpan().StartsWith(signature)))
            throw Nested(file.Name);
        return data;
    }

    private static List<UploadedZipFile> Scan(ZipArchive zip, UploadOptions limits)
    {
        if (zip.Entries.Count > limits.MaxEntries)
            throw new DomainException(
                ErrorKind.LimitExceeded,
                "Too many entries",
                $"file: the archive has {zip.Entries.Count} entries; the limit is {limits.MaxEntries}."
            );
        var files = new List<UploadedZipFile>();
        long declaredTotal = 0;
        foreach (var entry in zip.Entries)
        {
            var segments = CheckPath(entry);
            if (IsDirectory(entry) || IsJunk(segments))
                continue;
            if (ArchiveExtensions.Contains(Path.GetExtension(entry.Name)))
                throw Nested(entry.FullName);
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
            files.Add(new UploadedZipFile(entry, segments));
        }
        return files;
    }

    private DomainException TooLarge() =>
        new(
            ErrorKind.LimitExceeded,
            "Archive too large",
            $"file: the archive expands to more than {limits.MaxTotalBytes:N0} bytes."
        );

    private static DomainException Nested(string entry) =>
        new(
            ErrorKind.InvalidInput,
            "Nested archive",
            $"file: entry '{entry}' is an archive; upload one flat zip of images."
        );

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
        if (name.Length > MaxEntryNameLength || segments.Any(s => s.Length > MaxSegmentLength))
            throw new DomainException(
                ErrorKind.InvalidInput,
                "Path too long",
                $"file: entry '{Printable(name)[..Math.Min(name.Length, 80)]}...' has a path over "
                    + $"{MaxEntryNameLength} characters or a folder name over {MaxSegmentLength}."
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
