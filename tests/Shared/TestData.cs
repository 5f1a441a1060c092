namespace TransferApi.TestSupport;

/// <summary>Finds the real images shared beside the repository (never copied into it).</summary>
public static class TestData
{
    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    /// <summary>../shared/datasets relative to the repository root, or TRANSFERAPI_DATASETS.</summary>
    public static string DatasetsRoot =>
        Environment.GetEnvironmentVariable("TRANSFERAPI_DATASETS") is { Length: > 0 } configured
            ? configured
            : Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "datasets"));

    public static string AntsBees => Path.Combine(DatasetsRoot, "ants-bees");

    /// <summary>The first <paramref name="count"/> images (sorted by name) of a split/class folder of
    /// ants-bees.</summary>
    public static IReadOnlyList<string> AntsBeesImages(string split, string label, int count = int.MaxValue)
    {
        var folder = Path.Combine(AntsBees, split, label);
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException(
                $"Test images not found at {folder}. Tests read ../shared/datasets beside the repository (or "
                    + "TRANSFERAPI_DATASETS)."
            );
        return Directory.EnumerateFiles(folder).Order(StringComparer.Ordinal).Take(count).ToList();
    }

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "TransferApi.sln")))
                return dir.FullName;
        throw new InvalidOperationException("Could not find TransferApi.sln above " + AppContext.BaseDirectory);
    }
}
