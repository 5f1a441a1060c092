using System.Text.Json.Nodes;

namespace TransferApi.Tests.Docs;

/// <summary>
/// Nothing is documented in two places: tables in docs/ that restate the code are generated from it, or checked
/// against it. After a change, UPDATE_GENERATED_DOCS=1 ./scripts/test.sh --filter GeneratedDocsTests rewrites them.
/// </summary>
[Collection(ServiceCollection.Name)]
public class GeneratedDocsTests(TransferApiFactory factory)
{
    private const string Begin = "<!-- generated from the code: do not edit by hand -->";
    private const string End = "<!-- end of generated table -->";

    [Fact]
    public async Task The_configuration_table_is_the_option_classes_defaults_ranges_and_docs()
    {
        await CheckGeneratedAsync(
            Path.Combine(TestData.RepositoryRoot, "docs", "configuration.md"),
            OptionsTable.Generate()
        );
    }

    /// <summary>The table between the markers of <paramref name="path"/> must be <paramref
    /// name="generated"/>.</summary>
    private static async Task CheckGeneratedAsync(string path, string generated)
    {
        var text = await File.ReadAllTextAsync(path);
        var (start, end) = (text.IndexOf(Begin, StringComparison.Ordinal), text.IndexOf(End, StringComparison.Ordinal));
        Assert.True(start >= 0 && end > start, $"{path} has no generated table between its markers.");
        var current = text[(start + Begin.Length)..end].Trim('\n');
        var expected = generated.Trim('\n');
        if (Environment.GetEnvironmentVariable("UPDATE_GENERATED_DOCS") == "1")
        {
            await File.WriteAllTextAsync(path, text[..(start + Begin.Length)] + "\n" + expected + "\n" + text[end..]);
            return;
        }
        Assert.Equal(expected, current);
    }

    [Fact]
    public async Task The_training_options_table_is_the_request_documentation_and_its_defaults_are_the_cores()
    {
        await CheckGeneratedAsync(
            Path.Combine(TestData.RepositoryRoot, "docs", "training.md"),
            TrainingOptionsTable.Generate()
        );
        var stated = TrainingOptionsTable.StatedDefaults().ToList();
        Assert.True(stated.Count >= 15, $"only {stated.Count} options state a default");
        Assert.All(stated, s =>
            Assert.True(
                s.Documented == s.Actual,
                $"{s.Name}: documented default {s.Documented}, the training core's is {s.Actual}"
            )
        );
    }

    [Fact]
    public async Task The_api_guide_names_every_operation_of_the_service()
    {
        var guide = await File.ReadAllTextAsync(Path.Combine(TestData.RepositoryRoot, "docs", "api.md"));
        var json = await factory.CreateClient().GetStringAsync("/swagger/v1/swagger.json");
        var operations = JsonNode.Parse(json)!["paths"]!
            .AsObject()
            .SelectMany(path => path.Value!.AsObject().Select(o => $"{o.Key.ToUpperInvariant()} {path.Key}"))
            .ToList();
        Assert.NotEmpty(operations);
        var missing = operations.Where(o => !guide.Contains($"`{o}", StringComparison.Ordinal)).ToList();
        Assert.True(missing.Count == 0, $"docs/api.md does not mention: {string.Join(", ", missing)}");
    }
}
