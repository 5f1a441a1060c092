namespace TransferApi.Jobs;

/// <summary>
/// Work every worker process repeats on a timer, from its start: the safety nets that catch what a crash between a
/// commit and a queueing lost. A failed round (the database away for a moment) is logged and the next tick tries
/// again.
/// </summary>
public abstract class PeriodicService(ILogger logger) : BackgroundService
{
    protected abstract TimeSpan Interval { get; }

    /// <summary>What a round does, for the log when one fails ("sweeping webhook deliveries").</summary>
    protected abstract string Activity { get; }

    protected abstract Task RunOnceAsync(CancellationToken cancellation);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval);
        do
        {
            try
            {
                await RunOnceAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogWarning(e, "{Activity} failed; the next round tries again", Activity);
            }
        } while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
