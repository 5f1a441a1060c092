using static TorchSharp.torch;

namespace TransferApi.Training.Backbones;

/// <summary>
/// Loads an ImageNet checkpoint into an architecture: the classifier (and BatchNorm's counters) are dropped,
/// then every remaining name and shape must match the architecture exactly; the first that does not is named.
/// </summary>
public static class WeightsImport
{
    public static FeatureNetwork Load(BackboneArchitecture architecture, IReadOnlyDictionary<string, Tensor> stateDict)
    {
        var supplied = stateDict
            .Where(p =>
                !Ignored(p.Key)
                && !architecture.ClassifierPrefixes.Any(c => p.Key.StartsWith(c, StringComparison.Ordinal))
            )
            .ToList();
        // nn.DataParallel saves every name under "module.".
        if (supplied.Count > 0 && supplied.All(p => p.Key.StartsWith("module.", StringComparison.Ordinal)))
            supplied = supplied.Select(p => KeyValuePair.Create(p.Key["module.".Length..], p.Value)).ToList();

        var network = architecture.Create();
        try
        {
            var expected = network
                .state_dict()
                .Where(p => !Ignored(p.Key))
                .ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
            var byKey = supplied.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
            // "First" in the architecture's own order (a pickled state dict's order does not survive reading).
            foreach (var (key, target) in expected)
            {
                if (!byKey.TryGetValue(key, out var value))
                    throw new WeightsRejectedException(
                        $"'{key}' is missing: the file holds {byKey.Count(p => expected.ContainsKey(p.Key))} of the "
                            + $"{expected.Count} tensors {architecture.Name} needs.",
                        key
                    );
                if (!value.shape.SequenceEqual(target.shape))
                    throw new WeightsRejectedException(
                        $"'{key}' has shape [{string.Join(",", value.shape)}] "
                            + $"but {architecture.Name} needs [{string.Join(",", target.shape)}].",
                        key
                    );
                if (!value.is_floating_point())
                    throw new WeightsRejectedException(
                        $"'{key}' holds {value.dtype} values; weights must be floating point.",
                        key
                    );
            }
            var unexpected = byKey
                .Keys.Where(k => !expected.ContainsKey(k))
                .Order(StringComparer.Ordinal)
                .FirstOrDefault();
            if (unexpected is not null)
                throw new WeightsRejectedException(
                    $"'{unexpected}' is not a parameter of {architecture.Name} (nor of its ImageNet classifier, which "
                        + "is dropped).",
                    unexpected
                );
            using (no_grad())
            {
                foreach (var (key, value) in supplied)
                {
                    using var converted = value.to_type(ScalarType.Float32);
                    expected[key].copy_(converted);
                }
            }
            using var scope = NewDisposeScope();
            var notFinite = expected.FirstOrDefault(p => !p.Value.isfinite().all().item<bool>()).Key;
            if (notFinite is not null)
                throw new WeightsRejectedException($"'{notFinite}' holds NaN or infinite values.", notFinite);
            return network;
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>BatchNorm's num_batches_tracked counts training steps; inference never reads it.</summary>
    private static bool Ignored(string key) => key.EndsWith(".num_batches_tracked", StringComparison.Ordinal);
}
