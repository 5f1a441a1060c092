using TransferApi.Training.Backbones;

namespace TransferApi.Training.Tests;

/// <summary>Loads the real pretrained backbone once for all tests that need it.</summary>
public sealed class BackboneFixture : IDisposable
{
    public Backbone Backbone { get; } = BackboneCatalog.LoadBuiltIn(BackboneCatalog.ResNet18ImageNet);

    public void Dispose() => Backbone.Dispose();
}

[CollectionDefinition(Name)]
public sealed class BackboneCollection : ICollectionFixture<BackboneFixture>
{
    public const string Name = "pretrained backbone";
}
