using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using TransferApi.Persistence;

namespace TransferApi.Jobs;

/// <summary>
/// Holds a worker's Hangfire server back until the database schema is current. Migrations are a deployment
/// step of their own (compose's migrate service, the Kubernetes Job); a worker of a newer version started
/// meanwhile must not run jobs against the older schema. Registered before the Hangfire server, whose start
/// waits for this one's.
/// </summary>
internal sealed class MigrationGate(IDbContextFactory<TransferDbContext> dbFactory, ILogger<MigrationGate> logger)
    : IHostedService
{
    private static readonly TimeSpan Poll = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan LogEvery = TimeSpan.FromSeconds(30);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var waited = Stopwatch.StartNew();
        TimeSpan? lastLog = null;
        while (true)
        {
            string problem;
            try
            {
                await using var db = await dbFactory.CreateDbContextAsync(cancellationToken);
                var pending = (await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
                if (pending.Count == 0)
                {
                    if (waited.Elapsed > Poll)
                        logger.LogInformation(
                            "The database schema is current after {Seconds:N0} s; taking training jobs",
                            waited.Elapsed.TotalSeconds
                        );
                    return;
                }
                problem =
                    $"{pending.Count} migration(s) pending ({string.Join(", ", pending)}); run `TransferApi migrate`";
            }
            catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
            {
                problem = $"the database is unreachable ({e.Message})";
            }
            if (lastLog is null || waited.Elapsed - lastLog >= LogEvery)
            {
                logger.LogWarning("Waiting before taking training jobs: {Problem}", problem);
                lastLog = waited.Elapsed;
            }
            await Task.Delay(Poll, cancellationToken);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
