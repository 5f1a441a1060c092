using Microsoft.Extensions.Diagnostics.HealthChecks;
using TransferApi.Services;
using TransferApi.Training.Backbones;

namespace TransferApi.Hosting.HealthChecks;

/// <summary>
/// Ready only when the built-in backbones load: the first check loads them, so the first prediction does not wait
/// for it (registered ones load on first use).
/// </summary>
internal sealed class BackboneHealthCheck(BackboneRegistry backbones) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(
        HealthCheckContext context,
        CancellationToken cancellationToken = default
    )
    {
        var loaded = new List<Backbone>();
        foreach (var id in BackboneCatalog.BuiltIn)
            loaded.Add(await backbones.GetAsync(id));
        return HealthCheckResult.Healthy(
            string.Join(", ", loaded.Select(b => $"{b.Id} ({b.ParameterCount:N0} parameters)"))
        );
    }
}
