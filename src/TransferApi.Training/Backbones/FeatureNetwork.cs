using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace TransferApi.Training.Backbones;

/// <summary>
/// A pretrained image network without its classifier, as TorchVision defines it (so its state-dict keys are
/// TorchVision's): a stem, then <see cref="StageCount"/> stages that <c>unfreezeStages</c> counts from the end,
/// then global average pooling to <see cref="FeatureSize"/> features. Every architecture describes itself once
/// as <see cref="Sections"/>; running a prefix, a trainable tail, folding and exports all follow from that.
/// </summary>
public abstract class FeatureNetwork : Module<Tensor, Tensor>
{
    private bool channelsLast;

    protected FeatureNetwork(string name, BackboneArchitecture architecture)
        : base(name) => Architecture = architecture;

    public BackboneArchitecture Architecture { get; }

    public int FeatureSize => Architecture.FeatureSize;

    public int StageCount => Sections.Count - 1;

    /// <summary>Whether batch norms are folded into their convolutions (then every <see cref="Norm"/> is the
    /// identity).</summary>
    public Folding Folding { get; } = new();

    /// <summary>The stem (index 0, always frozen) and then each stage: the modules it owns (state-dict prefixes) and
    /// how it runs.</summary>
    protected abstract IReadOnlyList<Section> Sections { get; }

    /// <summary>Every convolution whose output goes straight into a batch norm, with that norm: what folding
    /// merges.</summary>
    protected abstract IEnumerable<(Conv2d Conv, BatchNorm2d Norm)> ConvNormPairs();

    public override Tensor forward(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        return Suffix(Run(Input(pixels), 0, Sections.Count), StageCount).MoveToOuterDisposeScope();
    }

    /// <summary>The activation entering stage <paramref name="firstTrainableStage"/> (0-based; <see cref="StageCount"/>
    /// = after the last), contiguous NCHW.</summary>
    public Tensor Prefix(Tensor pixels, int firstTrainableStage)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(firstTrainableStage, StageCount);
        using var scope = NewDisposeScope();
        return Run(Input(pixels), 0, firstTrainableStage + 1).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>The stages from <paramref name="firstStage"/> on, then pooling: features of a <see cref="Prefix"/>
    /// activation.</summary>
    public Tensor Suffix(Tensor activation, int firstStage)
    {
        using var scope = NewDisposeScope();
        return Run(activation, firstStage + 1, Sections.Count).mean([2, 3]).MoveToOuterDisposeScope();
    }

    /// <summary>State-dict prefixes of stage <paramref name="stage"/> (0-based): what a fine-tuned tail owns.</summary>
    public IReadOnlyList<string> StageModules(int stage) => Sections[stage + 1].Modules;

    /// <summary>The parameters of stage <paramref name="stage"/> (0-based).</summary>
    public IEnumerable<Parameter> StageParameters(int stage)
    {
        var byPath = ModulesByPath();
        return StageModules(stage).SelectMany(path => byPath[path].parameters());
    }

    /// <summary>
    /// Rewrites this network for inference only: each batch norm folded into the convolution before it
    /// (w * g/sqrt(v+e), b - m * g/sqrt(v+e)), and weights and activations in channels-last layout, which
    /// libtorch's CPU convolutions run faster. Same outputs within float rounding; never train it afterwards.
    /// </summary>
    public void FoldForInference()
    {
        if (Folding.Folded)
            return;
        var pairs = ConvNormPairs().ToList();
        var norms = modules().OfType<BatchNorm2d>().ToList();
        if (norms.Count != pairs.Count || norms.Except(pairs.Select(p => p.Norm)).Any())
            throw new InvalidOperationException(
                $"{Architecture.Name}: every batch norm must follow a convolution to be folded."
            );
        using (no_grad())
        {
            foreach (var (conv, norm) in pairs)
            {
                using var scope = NewDisposeScope();
                var scale = norm.weight!.div((norm.running_var! + norm.eps).sqrt());
                var bias = norm.bias!.sub(norm.running_mean!.mul(scale));
                if (conv.bias is { } existing)
                    bias = bias.add(existing.mul(scale));
                var weight = conv.weight!.mul(scale.reshape(-1, 1, 1, 1));
                Replace(conv, weight.DetachFromDisposeScope(), bias.DetachFromDisposeScope());
            }
            foreach (var conv in modules().OfType<Conv2d>())
            {
                using var scope = NewDisposeScope();
                Replace(conv, ChannelsLast(conv.weight!).DetachFromDisposeScope(), null);
            }
        }
        Folding.Folded = true;
        channelsLast = true;
        eval();
    }

    /// <summary>Swaps a convolution's weight (and bias, when given), releasing the replaced tensors now rather than at
    /// finalization.</summary>
    private static void Replace(Conv2d conv, Tensor weight, Tensor? bias)
    {
        var (oldWeight, oldBias) = (conv.weight, conv.bias);
        conv.weight = new Parameter(weight, requires_grad: false);
        oldWeight?.Dispose();
        if (bias is null)
            return;
        conv.bias = new Parameter(bias, requires_grad: false);
        oldBias?.Dispose();
    }

    private Tensor Input(Tensor pixels) => channelsLast ? ChannelsLast(pixels) : pixels.alias();

    private Tensor Run(Tensor x, int from, int to)
    {
        for (var s = from; s < to; s++)
            x = Sections[s].Run(x);
        return x;
    }

    /// <summary>NCHW shape with NHWC strides: what libtorch's channels-last convolutions want (TorchSharp 0.107 has no
    /// memory-format argument).</summary>
    private static Tensor ChannelsLast(Tensor x) => x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);

    /// <summary>The network up to its last activation (before pooling) as ONNX nodes; <paramref name="pixels"/> is the
    /// normalized input.</summary>
    public string EmitOnnx(IOnnxGraph graph, string pixels) =>
        Sections.Aggregate(pixels, (x, section) => section.Emit(graph, x));

    /// <summary>One part of the network: the state-dict prefixes of the modules it owns, its forward pass, and the same
    /// as ONNX nodes.</summary>
    protected sealed record Section(
        IReadOnlyList<string> Modules,
        Func<Tensor, Tensor> Run,
        Func<IOnnxGraph, string, string> Emit
    )
    {
        /// <summary>A section that runs (and emits) its blocks one after the other.</summary>
        public static Section Of(IReadOnlyList<string> modules, IReadOnlyList<Module<Tensor, Tensor>> blocks) =>
            new(
                modules,
                x => blocks.Aggregate(x, (y, block) => block.call(y)),
                (graph, x) => blocks.Aggregate(x, (y, block) => ((IOnnxBlock)block).Emit(graph, y))
            );
    }

    /// <summary>Looks up sub-modules by their state-dict path, e.g. "layer3" or "features.7".</summary>
    public IReadOnlyDictionary<string, Module> ModulesByPath() =>
        named_modules().ToDictionary(m => m.name, m => (Module)m.module);
}

/// <summary>Shared by a network and all its blocks: once folded, batch norms live inside the convolutions.</summary>
public sealed class Folding
{
    public bool Folded { get; internal set; }

    public Tensor Norm(BatchNorm2d norm, Tensor x) => Folded ? x : norm.call(x);
}

/// <summary>
/// A trainable copy of a network's last stages plus pooling, for fine-tuning: the activation entering
/// <see cref="FirstStage"/> in, features out. It starts from the pretrained weights; its own state dict holds
/// only those stages, so a model's checkpoint stores only what fine-tuning changed.
/// </summary>
public sealed class FeatureTail : Module<Tensor, Tensor>
{
    private readonly FeatureNetwork copy;

    public int FirstStage { get; }

    public FeatureTail(FeatureNetwork pretrained, int firstStage)
        : base(nameof(FeatureTail))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(firstStage, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(firstStage, pretrained.StageCount);
        FirstStage = firstStage;
        copy = pretrained.Architecture.Create();
        using (no_grad())
        {
            copy.load_state_dict(pretrained.state_dict());
        }
        var byPath = copy.ModulesByPath();
        for (var s = firstStage; s < copy.StageCount; s++)
            foreach (var path in copy.StageModules(s))
                register_module(path.Replace('.', '_'), byPath[path]);
    }

    public override Tensor forward(Tensor activation) => copy.Suffix(activation, FirstStage);

    /// <summary>Puts these stages' weights into a whole network of the same architecture (exports).</summary>
    public void CopyInto(FeatureNetwork network)
    {
        var (target, source) = (network.ModulesByPath(), copy.ModulesByPath());
        using (no_grad())
        {
            for (var s = FirstStage; s < copy.StageCount; s++)
                foreach (var path in copy.StageModules(s))
                    target[path].load_state_dict(source[path].state_dict());
        }
    }

    /// <summary>Trains the convolutions and batch-norm scales, but keeps every batch-norm's ImageNet
    /// statistics.</summary>
    public void TrainKeepingNormStatistics()
    {
        train();
        foreach (var module in modules().OfType<BatchNorm2d>())
            module.eval();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            copy.Dispose();
        base.Dispose(disposing);
    }
}
