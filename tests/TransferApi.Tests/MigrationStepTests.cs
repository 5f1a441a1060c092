namespace TransferApi.Tests;

/// <summary>
/// Migrations are a deployment step of their own (compose's migrate service, the Kubernetes Job): a worker
/// started before it waits, and takes jobs only once the schema is current.
/// </summary>
public class MigrationStepTests
{
    [Fact]
    public async Task A_worker_started_before_the_migration_step_waits_for_it_then_starts_taking_jobs()
    {
        var settings = new Dictionary<string, string>
        {
            ["Service__MigrateOnStartup"] = "false",
            ["Service__Roles"] = "Worker",
        };
        await using var worker = await ServiceProcess.StartAsync(
            TransferApiFactory.AdminConnection,
            settings,
            waitUntilReady: false
        );
        for (var i = 0; i < 120 && !worker.HasLogged("Waiting before taking training jobs"); i++)
            await Task.Delay(250);
        Assert.True(worker.HasLogged("migration(s) pending"), "the worker did not say it waits for migrations");
        Assert.False(
            worker.HasLogged("Starting Hangfire Server"),
            "the worker's Hangfire server started on an empty schema"
        );
        Assert.False(await worker.WaitUntilReadyAsync(TimeSpan.FromSeconds(2)));

        Assert.Equal(0, await worker.MigrateAsync());
        Assert.True(
            await worker.WaitUntilReadyAsync(TimeSpan.FromSeconds(60)),
            "the worker did not become ready after the migration step"
        );
        Assert.True(worker.HasLogged("The database schema is current"));
        Assert.True(worker.HasLogged("Starting Hangfire Server"));
    }
}
