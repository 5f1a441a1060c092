using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using AdamOptimizer = TorchSharp.Modules.Adam;
using AdamWOptimizer = TorchSharp.Modules.AdamW;
using SgdOptimizer = TorchSharp.Modules.SGD;

namespace TransferApi.Training.Heads;

/// <summary>
/// TorchSharp 0.107's Adam, AdamW and SGD with every Scalar they pass to libtorch held until the call returns.
/// TorchSharp's own steps convert doubles to Scalars implicitly and never dispose them: the Scalar is unreachable as
/// soon as its handle is read, so a garbage collection during the native call may finalize it (freeing the native
/// value) while libtorch still reads it. Measured: "toDouble: Expected false to be true" crashed 2 of 4 runs of the
/// recipe search (about 100,000 steps each). The fix upstream (dotnet/TorchSharp#1434, #1496) is unreleased. The
/// arithmetic is TorchSharp's own, operation for operation, so results are bit for bit the same (tested); state,
/// schedules and checkpoints are the base classes'.
/// </summary>
public static class KeptAliveOptimizers
{
    public static AdamOptimizer Adam(IEnumerable<Parameter> parameters, double lr, double weightDecay) =>
        new KeptAliveAdam(parameters, lr, weightDecay);

    public static AdamOptimizer Adam(IEnumerable<AdamOptimizer.ParamGroup> groups, double lr) =>
        new KeptAliveAdam(groups, lr);

    public static AdamWOptimizer AdamW(IEnumerable<Parameter> parameters, double lr, double weightDecay) =>
        new KeptAliveAdamW(parameters, lr, weightDecay);

    public static SgdOptimizer Sgd(IEnumerable<Parameter> parameters, double lr, double momentum, double weightDecay) =>
        new KeptAliveSgd(parameters, lr, momentum, weightDecay);

    /// <summary>One Adam or AdamW update of a parameter from its gradient: the moments, then the bias-corrected
    /// step.</summary>
    private static void AdamUpdate(
        Parameter param,
        Tensor grad,
        (Tensor Mean, Tensor Square, long Step) moments,
        AdamSettings options,
        bool conjugate
    )
    {
        var (beta1, beta2, lr) = (options.Beta1, options.Beta2, options.LearningRate);
        var biasCorrection1 = 1 - Math.Pow(beta1, moments.Step);
        var biasCorrection2 = 1 - Math.Pow(beta2, moments.Step);
        using (
            Scalar b1 = beta1,
                oneMinusB1 = 1 - beta1
        )
            moments.Mean.mul_(b1).add_(grad, alpha: oneMinusB1);
        using (
            Scalar b2 = beta2,
                oneMinusB2 = 1 - beta2
        )
            moments.Square.mul_(b2).addcmul_(grad, conjugate ? grad.conj() : grad, value: oneMinusB2);
        using Scalar correction = Math.Sqrt(biasCorrection2),
            epsilon = options.Eps,
            one = 1,
            step = -(lr / biasCorrection1);
        // add_(Scalar) would pass an implicit alpha of 1: passed here, held.
        using var denom = moments.Square.sqrt().div_(correction).add_(epsilon, one);
        param.addcdiv_(moments.Mean, denom, value: step);
    }

    private readonly record struct AdamSettings(double Beta1, double Beta2, double Eps, double LearningRate)
    {
        /// <summary>From a parameter group's options, which Adam and AdamW each define but with the same
        /// fields.</summary>
        public static AdamSettings Of(double? beta1, double? beta2, double? eps, double? learningRate) =>
            new(beta1!.Value, beta2!.Value, eps!.Value, learningRate!.Value);
    }

    private sealed class KeptAliveAdam : AdamOptimizer
    {
        public KeptAliveAdam(IEnumerable<Parameter> parameters, double lr, double weightDecay)
            : base(parameters, lr, weight_decay: weightDecay) { }

        public KeptAliveAdam(IEnumerable<ParamGroup> groups, double lr)
            : base(groups, lr) { }

        public override Tensor step(Func<Tensor>? closure = null) =>
            _step<ParamGroup>(
                group =>
                {
                    var options = group.Options;
                    var weightDecay = options.weight_decay!.Value;
                    var update = AdamSettings.Of(options.beta1, options.beta2, options.eps, options.LearningRate);
                    foreach (var param in group.Parameters)
                    {
                        if (param.grad is not { } grad)
                            continue;
                        var state = (State)_state[param.Handle];
                        state.step += 1;
                        if (weightDecay != 0)
                        {
                            using Scalar decay = weightDecay;
                            grad = grad.add(param, alpha: decay);
                        }
                        AdamUpdate(param, grad, (state.exp_avg, state.exp_avg_sq, state.step), update, conjugate: true);
                    }
                },
                closure
            );
    }

    private sealed class KeptAliveAdamW(IEnumerable<Parameter> parameters, double lr, double weightDecay)
        : AdamWOptimizer(parameters, lr, weight_decay: weightDecay)
    {
        public override Tensor step(Func<Tensor>? closure = null) =>
            _step<ParamGroup>(
                group =>
                {
                    var options = group.Options;
                    var update = AdamSettings.Of(options.beta1, options.beta2, options.eps, options.LearningRate);
                    foreach (var param in group.Parameters)
                    {
                        if (param.grad is not { } grad)
                            continue;
                        var state = (State)_state[param.Handle];
                        state.step += 1;
                        using (Scalar shrink = 1 - update.LearningRate * options.weight_decay!.Value)
                            param.mul_(shrink);
                        AdamUpdate(
                            param,
                            grad,
                            (state.exp_avg, state.exp_avg_sq, state.step),
                            update,
                            conjugate: false
                        );
                    }
                },
                closure
            );
    }

    private sealed class KeptAliveSgd(IEnumerable<Parameter> parameters, double lr, double momentum, double weightDecay)
        : SgdOptimizer(parameters, lr, momentum: momentum, weight_decay: weightDecay)
    {
        public override Tensor step(Func<Tensor>? closure = null) =>
            _step<ParamGroup>(
                group =>
                {
                    var options = group.Options;
                    var momentum = options.momentum!.Value;
                    var weightDecay = options.weight_decay!.Value;
                    foreach (var param in group.Parameters)
                    {
                        if (param.grad is not { } grad)
                            continue;
                        var state = (State)_state[param.Handle];
                        if (weightDecay != 0)
                        {
                            using Scalar decay = weightDecay;
                            grad = grad.add(param, alpha: decay);
                        }
                        if (momentum != 0)
                        {
                            if (state.momentum_buffer is not { } buffer)
                                state.momentum_buffer = grad.clone().detach().DetachFromDisposeScope();
                            else
                            {
                                using Scalar m = momentum,
                                    keep = 1 - options.dampening!.Value;
                                buffer.mul_(m).add_(grad, alpha: keep);
                            }
                            grad = state.momentum_buffer;
                        }
                        using Scalar step = -options.LearningRate!.Value;
                        param.add_(grad, alpha: step);
                    }
                },
                closure
            );
    }
}
