using TransferApi.Training.Backbones.Architectures;
using TransferApi.Training.Imaging;

namespace TransferApi.Training.Backbones;

/// <summary>
/// A network definition weights can be loaded into: its name, how to build it (randomly initialised), its
/// feature size, the preprocessing its ImageNet weights expect by default, and the state-dict prefixes of the
/// ImageNet classifier that an imported checkpoint may carry and that are dropped.
/// </summary>
public sealed class BackboneArchitecture
{
    private readonly Func<BackboneArchitecture, FeatureNetwork> create;

    private BackboneArchitecture(
        string name,
        string description,
        int featureSize,
        int stages,
        PreprocessingSpec preprocessing,
        string[] classifierPrefixes,
        Func<BackboneArchitecture, FeatureNetwork> create
    )
    {
        (Name, Description, FeatureSize, Stages, DefaultPreprocessing, ClassifierPrefixes) = (
            name,
            description,
            featureSize,
            stages,
            preprocessing,
            classifierPrefixes
        );
        this.create = create;
    }

    public string Name { get; }
    public string Description { get; }
    public int FeatureSize { get; }

    /// <summary>Stages <c>unfreezeStages</c> can fine-tune (counted from the end).</summary>
    public int Stages { get; }
    public PreprocessingSpec DefaultPreprocessing { get; }
    public IReadOnlyList<string> ClassifierPrefixes { get; }

    /// <summary>A new network of this architecture with TorchSharp's random initialisation.</summary>
    public FeatureNetwork Create() => create(this);

    public override string ToString() => Name;

    public static BackboneArchitecture ResNet18 { get; } = ResNet("resnet18", false, [2, 2, 2, 2]);
    public static BackboneArchitecture ResNet34 { get; } = ResNet("resnet34", false, [3, 4, 6, 3]);
    public static BackboneArchitecture ResNet50 { get; } = ResNet("resnet50", true, [3, 4, 6, 3]);

    public static BackboneArchitecture MobileNetV2 { get; } =
        new(
            "mobilenet_v2",
            "TorchVision MobileNetV2 (width 1.0): inverted residual blocks, 1280 pooled features; stages "
                + "features.1-3, 4-6, 7-13, 14-18",
            1280,
            4,
            PreprocessingSpec.TorchVision(),
            ["classifier."],
            a => new MobileNetV2(a)
        );

    public static BackboneArchitecture Vgg16 { get; } =
        new(
            "vgg16",
            "TorchVision VGG16 (configuration D, no batch norm): 13 convolutions, global average pooled to 512 "
                + "features; stages: conv blocks 2-5",
            512,
            4,
            PreprocessingSpec.TorchVision(),
            ["classifier."],
            a => new Vgg16(a)
        );

    public static BackboneArchitecture InceptionV3 { get; } =
        new(
            "inception_v3",
            "TorchVision Inception v3 at 299x299 (transform_input done by the preprocessing), 2048 pooled features; "
                + "stages Mixed_5b-5d, 6a-6e, 7a-7c",
            2048,
            3,
            PreprocessingSpec.TorchVision(299, 342, [0.5f, 0.5f, 0.5f], [0.5f, 0.5f, 0.5f]),
            ["fc.", "AuxLogits."],
            a => new InceptionV3(a)
        );

    /// <summary>The ImageNet ResNet18 of ML.NET's package: a basic-block ResNet whose last stage has three
    /// blocks.</summary>
    public static BackboneArchitecture CntkResNet18 { get; } =
        new(
            "resnet18-cntk",
            "ResNet18 as exported by CNTK for ML.NET: basic blocks [2,2,2,3], TorchVision layer names",
            512,
            4,
            PreprocessingSpec.CntkResNet,
            ["fc."],
            a => new ResNet(a, false, [2, 2, 2, 3])
        );

    /// <summary>What operators can register weights for.</summary>
    public static IReadOnlyList<BackboneArchitecture> Registrable { get; } =
    [ResNet18, ResNet34, ResNet50, MobileNetV2, Vgg16, InceptionV3];

    public static BackboneArchitecture? Find(string name) =>
        Registrable
            .Append(CntkResNet18)
            .FirstOrDefault(a => string.Equals(a.Name, name, StringComparison.OrdinalIgnoreCase));

    private static BackboneArchitecture ResNet(string name, bool bottleneck, int[] blocks) =>
        new(
            name,
            $"TorchVision {name}: {(bottleneck ? "bottleneck" : "basic")} blocks [{string.Join(",", blocks)}], "
                + $"{(bottleneck ? 2048 : 512)} pooled features; stages layer1-layer4",
            bottleneck ? 2048 : 512,
            4,
            PreprocessingSpec.TorchVision(),
            ["fc."],
            a => new ResNet(a, bottleneck, blocks)
        );
}
