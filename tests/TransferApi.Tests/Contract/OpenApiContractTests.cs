using System.Text.Json.Nodes;

namespace TransferApi.Tests.Contract;

/// <summary>
/// The HTTP contract clients rely on, pinned: the OpenAPI document's operations and schemas must match the
/// committed snapshot. After a deliberate change, ./scripts/update-openapi-snapshot.sh rewrites it (see
/// CONTRIBUTING.md) and the diff shows up in review.
/// </summary>
[Collection(ServiceCollection.Name)]
public class OpenApiContractTests(TransferApiFactory factory)
{
    public const string UpdateVariable = "UPDATE_OPENAPI_SNAPSHOT";
    private static readonly string SnapshotPath = Path.Combine(
        TestData.RepositoryRoot,
        "tests",
        "TransferApi.Tests",
        "Contract",
        "openapi.snapshot.txt"
    );

    private static readonly string ClientDocumentPath = Path.Combine(
        TestData.RepositoryRoot,
        "src",
        "TransferApi.Client",
        "openapi.json"
    );

    private async Task<JsonNode> DocumentAsync()
    {
        var json = await factory.CreateClient().GetStringAsync("/swagger/v1/swagger.json");
        return JsonNode.Parse(json)!;
    }

    [Fact]
    public async Task The_OpenAPI_document_matches_the_committed_snapshot()
    {
        var actual = OpenApiSnapshot.Lines(await DocumentAsync());
        if (Environment.GetEnvironmentVariable(UpdateVariable) == "1")
            await File.WriteAllLinesAsync(SnapshotPath, actual);
        var expected = File.Exists(SnapshotPath) ? await File.ReadAllLinesAsync(SnapshotPath) : [];
        var diff = OpenApiSnapshot.Diff(expected, actual);
        Assert.True(
            diff.Length == 0,
            $"The HTTP contract changed (- snapshot only, + service only):\n{diff}\n"
                + "If the change is deliberate, run ./scripts/update-openapi-snapshot.sh and commit the snapshot."
        );
    }

    [Fact]
    public async Task The_typed_client_is_generated_from_the_services_document()
    {
        var actual =
            ClientDocument(await DocumentAsync())
                .ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n";
        if (Environment.GetEnvironmentVariable(UpdateVariable) == "1")
            await File.WriteAllTextAsync(ClientDocumentPath, actual);
        Assert.True(
            File.Exists(ClientDocumentPath) && await File.ReadAllTextAsync(ClientDocumentPath) == actual,
            "src/TransferApi.Client/openapi.json is not the service's OpenAPI document: run "
                + "./scripts/update-openapi-snapshot.sh and commit it with the snapshot."
        );
    }

    /// <summary>
    /// The service's document as the client is generated from it. NSwag makes one method of an operation that takes
    /// a JSON body or a multipart form, sending the JSON and ignoring the form's parameters: the client's document
    /// keeps such an operation's JSON body only, and the hand-written layer sends the form (ScoreZipAsync).
    /// </summary>
    private static JsonNode ClientDocument(JsonNode document)
    {
        foreach (var path in document["paths"]!.AsObject())
        foreach (var operation in path.Value!.AsObject())
            if (
                operation.Value!["requestBody"]?["content"] is JsonObject content
                && content.ContainsKey("application/json")
            )
                content.Remove("multipart/form-data");
        return document;
    }

    [Fact]
    public async Task Every_operation_has_an_operationId_and_a_summary()
    {
        var document = await DocumentAsync();
        var operations = document["paths"]!
            .AsObject()
            .SelectMany(path =>
                path.Value!.AsObject().Select(o => (At: $"{o.Key.ToUpperInvariant()} {path.Key}", Op: o.Value!))
            )
            .ToList();
        Assert.NotEmpty(operations);
        Assert.Empty(operations.Where(o => o.Op["operationId"] is null).Select(o => o.At));
        Assert.Empty(
            operations.Where(o => string.IsNullOrWhiteSpace(o.Op["summary"]?.GetValue<string>())).Select(o => o.At)
        );
        var ids = operations.Select(o => o.Op["operationId"]!.GetValue<string>()).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
    }

    [Fact]
    public async Task Every_schema_property_has_a_description()
    {
        var undescribed = OpenApiSnapshot.UndescribedProperties(await DocumentAsync());
        Assert.True(undescribed.Count == 0, $"Properties without a description: {string.Join(", ", undescribed)}");
    }
}
