using System.Net;
using TransferApi.Features.Datasets;
using TransferApi.Http;
using TransferApi.Persistence;

namespace TransferApi.Tests;

/// <summary>The data set calls many tests make.</summary>
public static class DatasetRequests
{
    /// <summary>Uploads a zip of <paramref name="entries"/> and asserts it was created.</summary>
    public static async Task<DatasetResponse> UploadDatasetAsync(
        this HttpClient client,
        string name,
        IEnumerable<(string, byte[])> entries,
        params (string, string)[] fields
    )
    {
        var response = await client.PostAsync(
            "/api/datasets",
            Archives.DatasetForm(name, Archives.Zip(entries), fields: fields)
        );
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return await response.ReadAsync<DatasetResponse>();
    }

    /// <summary>The data set's images (up to 200), with extra query parameters such as
    /// "&amp;split=Unlabeled".</summary>
    public static async Task<List<DatasetImageResponse>> DatasetImagesAsync(
        this HttpClient client,
        Guid id,
        string query = ""
    ) =>
        (
            await (await client.GetAsync($"/api/datasets/{id}/images?pageSize=200{query}")).ReadAsync<
                Page<DatasetImageResponse>
            >()
        ).Items.ToList();

    /// <summary>Polls GET …/health until a report of the data set's current version is Ready.</summary>
    public static async Task<DatasetHealthResponse> ReadyHealthAsync(this HttpClient client, Guid id, int seconds = 180)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var health = await (await client.GetAsync($"/api/datasets/{id}/health")).ReadAsync<DatasetHealthResponse>();
            Assert.NotEqual(HealthStatus.Failed, health.Status);
            if (health.Status == HealthStatus.Ready && !health.Stale)
                return health;
            Assert.True(DateTime.UtcNow < deadline, $"health of {id} still {health.Status} at {health.Progress}");
            await Task.Delay(200);
        }
    }
}
