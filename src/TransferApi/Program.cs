using Microsoft.Extensions.Options;
using TransferApi.Hosting;
using TransferApi.Options;

var builder = WebApplication.CreateBuilder(args);
builder.AddTransferApi();

var app = builder.Build();

// `TransferApi migrate` applies the schema and exits: the one-off step of deployments (compose, Kubernetes Job).
if (args.Contains("migrate"))
{
    await app.Services.MigrateDatabaseAsync();
    return;
}
if (app.Services.GetRequiredService<IOptions<ServiceOptions>>().Value.MigrateOnStartup)
    await app.Services.MigrateDatabaseAsync();

app.ConfigureTorch();
app.MapTransferApi();
app.Run();

/// <summary>Entry point, visible to WebApplicationFactory in the integration tests.</summary>
public partial class Program;
