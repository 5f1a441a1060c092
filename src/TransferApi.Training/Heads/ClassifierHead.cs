using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace TransferApi.Training.Heads;

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
                // Drawn with rand(generator) and copied: init.uniform_ in TorchSharp 0.107 did not honour its generator
                // (measured).
                foreach (var parameter in new[] { layer.weight!, layer.bias! })
                {
                    using var draw = rand(parameter.shape, generator: generator).mul_(2 * bound).sub_(bound);
                    parameter.copy_(draw);
                }
            }
        }
        return Sequential(("0", hidden), ("1", ReLU()), ("2", new SeededDropout(spec.Dropout, seed)), ("3", output));
    }

    /// <summary>Seeds the head's dropout masks for one batch, so a job can resume between any two batches.</summary>
    public static void SeedBatch(Module<Tensor, Tensor> head, long seed, int epoch, int batch)
    {
        foreach (var dropout in head.modules().OfType<SeededDropout>())
            dropout.Reseed(HeadTrainer.EpochSeed(seed, epoch, stream: 0x5EED) ^ ((ulong)batch * 0xBF58476D1CE4E5B9UL));
    }

    /// <summary>
    /// Dropout drawing its masks from its own seeded generator instead of libtorch's global one, so a job's
    /// result depends on its seed alone, whatever else runs in the process. Identity in evaluation mode.
    /// </summary>
    private sealed class SeededDropout(double probability, long seed) : Module<Tensor, Tensor>(nameof(SeededDropout))
    {
        private Generator generator = new((ulong)seed ^ 0x5EED);

        public void Reseed(ulong batchSeed)
        {
            generator.Dispose();
            generator = new Generator(batchSeed);
        }

        public override Tensor forward(Tensor input)
        {
            if (!training || probability == 0)
                return input.alias();
            // Scalars held until libtorch has read them (see KeptAliveOptimizers).
            using Scalar threshold = probability,
                survivors = 1 - probability;
            using var keep = rand(input.shape, generator: generator).ge_(threshold);
            return input.mul(keep).div_(survivors);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                generator.Dispose();
            base.Dispose(disposing);
        }
    }
}
