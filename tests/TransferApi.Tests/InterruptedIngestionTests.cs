using Microsoft.Extensions.DependencyInjection;
using TransferApi.Features.Datasets;
using TransferApi.Training;

namespace TransferApi.Tests;

[Collection(ServiceCollection.Name)]
public class InterruptedIngestionTests(TransferApiFactory factory)
{
    [Fact]
    public async Task An_upload_interrupted_after_batches_were_written_leaves_nothing_behind()
    {
        var client = factory.CreateClient();
        var dataset = await (
            await client.PostAsync(
                "/api/datasets",
                Archives.DatasetForm("interrupted", Archives.Zip(Archives.TwoClasses(2)))
            )
        ).ReadAsync<DatasetResponse>();
        var before = await factory.CountDatasetRowsAsync();

        // The client goes away while the 5th of 8 images is read: batches of 2 were already written by then.
        using var disconnect = new CancellationTokenSource();
        IEnumerable<IncomingImage> Incoming()
        {
            for (var i = 0; i < 8; i++)
            {
                if (i == 5)
                    disconnect.Cancel();
                yield return new IncomingImage(
                    $"w{i}.png",
                    "wasps",
                    DataSplit.Unassigned,
                    false,
                    Archives.NoisePng(16, 16, 500 + i)
                );
            }
        }
        await using var scope = factory.Services.CreateAsyncScope();
        var ingestion = scope.ServiceProvider.GetRequiredService<DatasetIngestion>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            ingestion.AddAsync(dataset.Id, Incoming(), disconnect.Token)
        );

        Assert.Equal(before, await factory.CountDatasetRowsAsync());
    }
}
