using System.Net.Http.Json;
using System.Text.Json;

namespace TransferApi.TestSupport;

/// <summary>
/// Training jobs in a row on one service process, recording its resident memory after each: first jobs on images
/// the service has not seen (each runs the frozen backbone), then jobs on the same images again (features from
/// the cache). What an operator running one worker for an afternoon sees.
/// </summary>
public static class MemoryWorkload
{
    /// <param name="ExtractionRss">Resident bytes after each job that ran the backbone.</param>
    /// <param name="CachedRss">Resident bytes after each job on cached features.</param>
    public sealed record Result(IReadOnlyList<long> ExtractionRss, IReadOnlyList<long> CachedRss, long PeakRss);

    public static async Task<Result> RunAsync(
        ServiceProcess service,
        int extractionJobs,
        int cachedJobs,
        int imagesPerJob,
        int side = 224
    )
    {
        var datasets = new List<Guid>();
        var extraction = new List<long>();
        for (var job = 0; job < extractionJobs; job++)
        {
            // Fresh images for every job: none of them has cached features yet.
            var entries = Enumerable
                .Range(0, imagesPerJob)
                .Select(i =>
                    ($"{(i % 2 == 0 ? "even" : "odd")}/{i}.png", Archives.NoisePng(side, side, job * 100_000 + i))
                )
                .ToList();
            var created = await service.Client.PostAsync(
                "/api/datasets",
                Archives.DatasetForm($"memory {job}", Archives.Zip(entries))
            );
            datasets.Add(Id(await created.Content.ReadAsStringAsync()));
            await TrainAsync(service, datasets[^1]);
            extraction.Add(service.ResidentBytes);
        }
        var cached = new List<long>();
        for (var job = 0; job < cachedJobs; job++)
        {
            await TrainAsync(service, datasets[job % datasets.Count]);
            cached.Add(service.ResidentBytes);
        }
        return new Result(extraction, cached, service.PeakResidentBytes);
    }

    private static async Task TrainAsync(ServiceProcess service, Guid dataset)
    {
        var answer = await service.Client.PostAsJsonAsync(
            "/api/training-jobs",
            new { datasetId = dataset, epochs = 3 }
        );
        var job = Id(await answer.Content.ReadAsStringAsync());
        while (true)
        {
            var state = JsonDocument
                .Parse(await service.Client.GetStringAsync($"/api/training-jobs/{job}"))
                .RootElement.GetProperty("status")
                .GetString();
            // A moment for the worker's housekeeping after the commit (vacuum, dispatch) before memory is read.
            if (state == "Succeeded")
            {
                await Task.Delay(500);
                return;
            }
            if (state is "Failed" or "Cancelled")
                throw new InvalidOperationException($"job {job} ended {state}");
            await Task.Delay(200);
        }
    }

    private static Guid Id(string json) => JsonDocument.Parse(json).RootElement.GetProperty("id").GetGuid();
}
