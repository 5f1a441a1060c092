using System.Net;
using SixLabors.ImageSharp;
using TransferApi.Features.Datasets;
using TransferApi.Http;
using TransferApi.Services;
using TransferApi.Training;

namespace TransferApi.Tests;

[Collection(ServiceCollection.Name)]
public class DatasetImageTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    private async Task<(DatasetResponse Dataset, Dictionary<string, byte[]> Originals)> UploadSplitDatasetAsync()
    {
        var originals = new Dictionary<string, byte[]>();
        foreach (var (split, folder) in new[] { ("train", "train"), ("val", "val") })
        foreach (var label in new[] { "ants", "bees" })
        foreach (var path in TestData.AntsBeesImages(split, label, 2))
            originals[$"{folder}/{label}/{Path.GetFileName(path)}"] = File.ReadAllBytes(path);
        var response = await client.PostAsync(
            "/api/datasets",
            Archives.DatasetForm("browse", Archives.Zip(originals.Select(o => (o.Key, o.Value))))
        );
        return (await response.ReadAsync<DatasetResponse>(), originals);
    }

    [Fact]
    public async Task Images_are_listed_by_label_and_split_and_served_as_uploaded()
    {
        var (dataset, originals) = await UploadSplitDatasetAsync();

        var all = await (await client.GetAsync($"/api/datasets/{dataset.Id}/images")).ReadAsync<
            Page<DatasetImageResponse>
        >();
        Assert.Equal(8, all.TotalCount);
        var bees = await (
            await client.GetAsync($"/api/datasets/{dataset.Id}/images?label=bees&split=validation")
        ).ReadAsync<Page<DatasetImageResponse>>();
        Assert.Equal(2, bees.TotalCount);
        Assert.All(bees.Items, i => Assert.Equal(("bees", DataSplit.Validation), (i.Label, i.Split)));

        var image = bees.Items[0];
        var download = await client.GetAsync($"/api/datasets/{dataset.Id}/images/{image.Id}");
        Assert.Equal(HttpStatusCode.OK, download.StatusCode);
        Assert.Equal("image/jpeg", download.Content.Headers.ContentType?.MediaType);
        var bytes = await download.Content.ReadAsByteArrayAsync();
        Assert.Equal(originals[image.FileName], bytes);
        Assert.Equal(bytes.Length, image.SizeBytes);
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)), image.Sha256);

        var thumbnail = await client.GetAsync($"/api/datasets/{dataset.Id}/images/{image.Id}?thumbnail=true");
        using var small = Image.Load(await thumbnail.Content.ReadAsByteArrayAsync());
        Assert.Equal(Thumbnails.Side, Math.Max(small.Width, small.Height));
        Assert.True(
            Math.Abs(small.Width / (double)small.Height - image.Width / (double)image.Height) < 0.05,
            "thumbnail keeps the aspect ratio"
        );
    }

    [Fact]
    public async Task Browsing_with_a_bad_split_or_unknown_ids_answers_problems()
    {
        var (dataset, _) = await UploadSplitDatasetAsync();
        var badSplit = await client.GetAsync($"/api/datasets/{dataset.Id}/images?split=holdout");
        Assert.Equal(HttpStatusCode.BadRequest, badSplit.StatusCode);
        Assert.StartsWith("split:", (await badSplit.ProblemAsync()).GetProperty("detail").GetString());
        Assert.Equal(
            HttpStatusCode.NotFound,
            (await client.GetAsync($"/api/datasets/{Guid.NewGuid()}/images")).StatusCode
        );
        var missing = await client.GetAsync($"/api/datasets/{dataset.Id}/images/{Guid.NewGuid()}");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        await missing.ProblemAsync();
    }
}
