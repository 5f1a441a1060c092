using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace TransferApi.Training.Training;

/// <summary>Builds the trainable head on top of the backbone's features. Module names are checkpoint keys.</summary>
public static class ClassifierHead
{
    public static Module<Tensor, Tensor> Create(HeadSpec spec, int features, int classes, long seed)
    {
        if (spec.Kind == HeadKind.Linear)
        {
            var linear = Linear(features, classes);
            using (no_grad())
            {
                // Softmax regression is convex: a zero start is as good as a random one and needs no RNG.
                linear.weight!.zero_();
                linear.bias!.zero_();
            }
            return linear;
        }
        var hidden = Linear(features, spec.HiddenUnits);
        var output = Linear(spec.HiddenUnits, classes);
        // Seeded initialisation (PyTorch's default bounds) from a private generator: reproducible whatever else runs.
        using var generator = new Generator((ulong)seed);
        using (no_grad())
        {
            foreach (var (layer, fanIn) in new[] { (hidden, features), (output, spec.HiddenUnits) })
            {
                var bound = 1.0 / Math.Sqrt(fanIn);
                init.uniform_(layer.weight!, -bound, bound, generator);
                init.uniform_(layer.bias!, -bound, bound, generator);
            }
        }
        return Sequential(("0", hidden), ("1", ReLU()), ("2", Dropout(spec.Dropout)), ("3", output));
    }
}
