using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace TransferApi.TestSupport;

/// <summary>
/// The real service binary (the host build copied beside the tests) in its own process, on its own database,
/// with extra environment such as a GC heap limit. For what an in-process test host cannot show: memory.
/// </summary>
public sealed class ServiceProcess : IAsyncDisposable
{
    private readonly Process process;
    private readonly string adminConnection;
    private readonly string database;

    public HttpClient Client { get; }

    /// <summary>Everything the service wrote to stdout and stderr so far, line by line.</summary>
    public ConcurrentQueue<string> Output { get; } = new();

    public bool HasLogged(string text) => Output.Any(line => line.Contains(text, StringComparison.Ordinal));

    /// <summary>The service's bootstrap admin key (its <see cref="Client"/> sends it).</summary>
    public static string AdminKey { get; } = $"service-admin-{Guid.NewGuid():N}";

    /// <summary>One per test run, so every process of a test (API, workers) reads the same key ring.</summary>
    public static string KeyEncryptionKey { get; } =
        Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));

    private ServiceProcess(Process process, string adminConnection, string database, Uri address)
    {
        this.process = process;
        this.adminConnection = adminConnection;
        this.database = database;
        Client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromMinutes(10) };
        Client.DefaultRequestHeaders.Add("X-Api-Key", AdminKey);
    }

    /// <summary>Peak resident memory of the service so far (VmHWM), in bytes.</summary>
    public long PeakResidentBytes => StatusBytes("VmHWM:");

    /// <summary>Resident memory of the service now (VmRSS), in bytes.</summary>
    public long ResidentBytes => StatusBytes("VmRSS:");

    private long StatusBytes(string field) =>
        File.ReadLines($"/proc/{process.Id}/status")
            .Where(l => l.StartsWith(field, StringComparison.Ordinal))
            .Select(l =>
                long.Parse(
                    l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1],
                    System.Globalization.CultureInfo.InvariantCulture
                ) * 1024
            )
            .Single();

    /// <summary>A connection string to the service's database.</summary>
    public string ConnectionString =>
        new NpgsqlConnectionStringBuilder(adminConnection) { Database = database }.ConnectionString;

    public string Database => database;

    /// <param name="database">An existing database to share with an earlier process, or null for a new one.</param>
    /// <param name="waitUntilReady">Return once /health/ready answers 200 (else as soon as the process runs).</param>
    public static async Task<ServiceProcess> StartAsync(
        string adminConnection,
        IDictionary<string, string> environment,
        string? database = null,
        bool waitUntilReady = true
    )
    {
        if (database is null)
        {
            database = $"transferapi_proc_{Guid.NewGuid():N}";
            await using var connection = new NpgsqlConnection(adminConnection);
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE \"{database}\"", connection);
            await create.ExecuteNonQueryAsync();
        }
        var port = FreePort();
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "TransferApi.dll")])
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["ConnectionStrings__Postgres"] = new NpgsqlConnectionStringBuilder(adminConnection)
        {
            Database = database,
        }.ConnectionString;
        start.Environment["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}";
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        start.Environment["Service__MigrateOnStartup"] = "true";
        // As the container image and run.sh set it (docker/Dockerfile says why).
        start.Environment["MALLOC_ARENA_MAX"] = "2";
        start.Environment["Auth__BootstrapAdminKey"] = AdminKey;
        start.Environment["Secrets__KeyEncryptionKey"] = KeyEncryptionKey;
        // Benchmarks and tests measure the service, not its per-key allowances.
        start.Environment["RateLimits__PredictPerMinute"] = "10000000";
        start.Environment["RateLimits__UploadsPerMinute"] = "100000";
        // Tests check the float32 path on every machine (see TransferApiFactory); speed benchmarks pass Auto.
        start.Environment["Backbones__Precision"] = "Fp32";
        foreach (var (key, value) in environment)
            start.Environment[key] = value;
        var process = Process.Start(start)!;
        var service = new ServiceProcess(process, adminConnection, database, new Uri($"http://127.0.0.1:{port}"));
        process.OutputDataReceived += (_, line) =>
        {
            if (line.Data is not null)
                service.Output.Enqueue(line.Data);
        };
        process.ErrorDataReceived += (_, line) =>
        {
            if (line.Data is not null)
                service.Output.Enqueue(line.Data);
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        // Readiness loads the backbones and applies every migration: with several service processes starting at once
        // on CI's two cores, that has taken over a minute.
        if (!waitUntilReady || await service.WaitUntilReadyAsync(ReadyTimeout))
            return service;
        // Its last words say why (a port taken meanwhile, a bad setting): keep them in the failure.
        var exited = process.HasExited ? $"exited with code {process.ExitCode}" : "still running";
        var lastLines = string.Join("\n", service.Output.TakeLast(30));
        await service.DisposeAsync();
        throw new InvalidOperationException(
            $"The service process did not become ready within {ReadyTimeout.TotalSeconds} s ({exited}). "
                + $"Its last output:\n{lastLines}"
        );
    }

    /// <summary>Polls /health/ready until it answers 200; false after <paramref name="timeout"/> or if the process
    /// ended.</summary>
    public async Task<bool> WaitUntilReadyAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline && !process.HasExited)
        {
            try
            {
                if ((await Client.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK)
                    return true;
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }
            await Task.Delay(250);
        }
        return false;
    }

    /// <summary>Runs `TransferApi migrate` on this service's database, as a deployment's migration step does; returns
    /// its exit code.</summary>
    public async Task<int> MigrateAsync()
    {
        var start = new ProcessStartInfo(
            "dotnet",
            [Path.Combine(AppContext.BaseDirectory, "TransferApi.dll"), "migrate"]
        )
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["ConnectionStrings__Postgres"] = ConnectionString;
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        start.Environment["Auth__BootstrapAdminKey"] = AdminKey;
        start.Environment["Secrets__KeyEncryptionKey"] = KeyEncryptionKey;
        using var migrate = Process.Start(start)!;
        var output = migrate.StandardOutput.ReadToEndAsync();
        var errors = migrate.StandardError.ReadToEndAsync();
        await migrate.WaitForExitAsync();
        foreach (var line in ((await output) + (await errors)).Split('\n'))
            Output.Enqueue("[migrate] " + line);
        return migrate.ExitCode;
    }

    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromMinutes(3);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>
    /// Sends SIGTERM, as Kubernetes and Docker do to stop a container, and waits for the process to exit.
    /// </summary>
    /// <returns>The exit code and how long the process took to stop.</returns>
    public async Task<(int ExitCode, TimeSpan Took)> TerminateAsync(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        using (
            var kill = Process.Start(
                "kill",
                ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]
            )
        )
            await kill.WaitForExitAsync();
        using var deadline = new CancellationTokenSource(timeout);
        await process.WaitForExitAsync(deadline.Token);
        return (process.ExitCode, clock.Elapsed);
    }

    /// <summary>Ends the process at once, as a crash would (no graceful shutdown); the database stays.</summary>
    public async Task KillAsync()
    {
        if (process.HasExited)
            return;
        process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync();
    }

    /// <summary>Kills the process and drops its database unless <paramref name="keepDatabase"/>.</summary>
    public async ValueTask DisposeAsync() => await DisposeAsync(keepDatabase: false);

    public async ValueTask DisposeAsync(bool keepDatabase)
    {
        Client.Dispose();
        await KillAsync();
        process.Dispose();
        if (keepDatabase)
            return;
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(adminConnection);
        await connection.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)", connection);
        await drop.ExecuteNonQueryAsync();
    }
}
