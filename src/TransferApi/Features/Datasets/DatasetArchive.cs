using TransferApi.Options;
using TransferApi.Services;
using TransferApi.Training;

namespace TransferApi.Features.Datasets;

/// <summary>One file of the archive that lies in a class folder, with its bytes (read within the limits).</summary>
public sealed record ArchiveFile(string Entry, string? Label, DataSplit Split, bool SplitFromFolder, byte[] Data);

/// <summary>
/// A folder-per-class zip (optionally under train/ val/ test/): where each file's class and split come from. The
/// archive's safety (paths, links, nested archives, sizes, zip bombs) is <see cref="UploadedZip"/>'s.
/// </summary>
public sealed class DatasetArchive : IDisposable
{
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

    private readonly UploadedZip zip;
    private readonly int wrapperFolders;
    private readonly bool foldersFixSplits;

    private DatasetArchive(UploadedZip zip)
    {
        this.zip = zip;
        wrapperFolders = CommonWrapperFolder(zip.Files.Select(f => f.Segments).ToList());
        // A lone train/ folder holds everything and fixes nothing: only val/ or test/ folders define a split.
        foldersFixSplits = zip.Files.Any(f => FolderSplit(f.Segments) is DataSplit.Validation or DataSplit.Test);
    }

    public static DatasetArchive Open(Stream stream, UploadOptions limits) => new(UploadedZip.Open(stream, limits));

    /// <summary>Every file in archive order: those outside a class folder as a rejection, the others with their
    /// bytes.</summary>
    public IEnumerable<(ArchiveFile? File, string Entry, string? Rejection)> ReadFiles()
    {
        foreach (var file in zip.Files)
        {
            var (label, split, fromFolder) = Locate(file.Segments);
            if (label is null && split != DataSplit.Unlabeled)
            {
                yield return (
                    null,
                    file.Name,
                    "not inside a class folder (expected <class>/<image>, <split>/<class>/<image> or unlabeled/<image>)"
                );
                continue;
            }
            yield return (new ArchiveFile(file.Name, label, split, fromFolder, zip.Read(file)), file.Name, null);
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

    public void Dispose() => zip.Dispose();
}
