using System.Text.RegularExpressions;

namespace TransferApi.Tests;

/// <summary>
/// The host's rooms stay what docs/architecture.md says: only the composition root imports feature folders, and a
/// feature never imports a sibling. Read from the sources, so a new file cannot slip past.
/// </summary>
public partial class LayoutRulesTests
{
    private static readonly string Host = Path.Combine(TestData.RepositoryRoot, "src", "TransferApi");

    [Fact]
    public void Only_the_composition_root_imports_feature_folders_and_no_feature_imports_a_sibling()
    {
        var violations = new List<string>();
        foreach (var file in Directory.EnumerateFiles(Host, "*.cs", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(Host, file).Replace('\\', '/');
            if (
                relative.StartsWith("obj/", StringComparison.Ordinal)
                || relative.StartsWith("bin/", StringComparison.Ordinal)
            )
                continue;
            if (relative.StartsWith("Hosting/", StringComparison.Ordinal) || relative == "Program.cs")
                continue;
            var ownFeature = relative.StartsWith("Features/", StringComparison.Ordinal) ? relative.Split('/')[1] : null;
            foreach (Match use in FeatureReference().Matches(File.ReadAllText(file)))
                if (use.Groups[1].Value != ownFeature)
                    violations.Add($"{relative} uses Features.{use.Groups[1].Value}");
        }
        Assert.True(violations.Count == 0, string.Join("\n", violations));
    }

    [Fact]
    public void The_training_core_references_no_host_framework()
    {
        var project = File.ReadAllText(
            Path.Combine(TestData.RepositoryRoot, "src", "TransferApi.Training", "TransferApi.Training.csproj")
        );
        foreach (var framework in new[] { "AspNetCore", "EntityFrameworkCore", "Hangfire", "Npgsql" })
            Assert.DoesNotContain(framework, project, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"TransferApi\.Features\.(\w+)")]
    private static partial Regex FeatureReference();
}
