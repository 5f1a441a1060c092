using System.Net;
using System.Text;
using TransferApi.Features.Datasets;

namespace TransferApi.Tests;

[Collection(ServiceCollection.Name)]
public class DatasetUploadTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    private static (string, byte[]) Photo(string split, string label, int index) => Archives.Photo(split, label, index);

    private static List<(string, byte[])> TwoClasses(int perClass = 2) => Archives.TwoClasses(perClass);

    [Fact]
    public async Task Upload_stores_classes_and_lists_non_image_files_as_rejected()
    {
        var entries = TwoClasses();
        entries.Add(("ants/readme.txt", Encoding.UTF8.GetBytes("not an image")));
        entries.Add(("__MACOSX/ants/._0.jpg", [0, 1, 2]));
        entries.Add(("bees/.DS_Store", [0, 1, 2]));

        var response = await client.PostAsync(
            "/api/datasets",
            Archives.DatasetForm("two classes", Archives.Zip(entries))
        );

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var dataset = await response.ReadAsync<DatasetResponse>();
        Assert.Equal($"/api/datasets/{dataset.Id}", response.Headers.Location?.OriginalString);
        Assert.Equal(4, dataset.ImageCount);
        Assert.Equal([("ants", 2), ("bees", 2)], dataset.Classes.Select(c => (c.Name, c.ImageCount)));
        var rejected = Assert.Single(dataset.Rejected);
        Assert.Equal("ants/readme.txt", rejected.Entry);
        Assert.Contains("not an image", rejected.Reason);

        var read = await (await client.GetAsync($"/api/datasets/{dataset.Id}")).ReadAsync<DatasetResponse>();
        Assert.Equal(dataset.Classes, read.Classes);
        Assert.Equal(
            4,
            await factory.QueryAsync(db => Task.FromResult(db.DatasetImages.Count(i => i.DatasetId == dataset.Id)))
        );
    }

    [Fact]
    public async Task Upload_honours_split_folders_and_a_wrapping_top_folder()
    {
        var entries = new[]
        {
            Photo("train", "ants", 0),
            Photo("train", "bees", 0),
            Photo("val", "ants", 0),
            Photo("val", "bees", 0),
        }.Select((e, i) => ($"hymenoptera/{(i < 2 ? "train" : "val")}/{e.Item1}", e.Item2));
        var response = await client.PostAsync("/api/datasets", Archives.DatasetForm("split", Archives.Zip(entries)));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var dataset = await response.ReadAsync<DatasetResponse>();
        Assert.Equal(["ants", "bees"], dataset.Classes.Select(c => c.Name));
        var splits = await factory.QueryAsync(db =>
            Task.FromResult(
                db.DatasetImages.Where(i => i.DatasetId == dataset.Id)
                    .Select(i => i.Split.ToString())
                    .OrderBy(s => s)
                    .ToList()
            )
        );
        Assert.Equal(["Train", "Train", "Validation", "Validation"], splits);
    }

    [Fact]
    public async Task Upload_rejects_a_body_over_the_request_size_limit()
    {
        var before = await factory.CountDatasetRowsAsync();
        var response = await client.PostAsync(
            "/api/datasets",
            Archives.DatasetForm("too big", new byte[TransferApiFactory.MaxRequestBytes + 1024])
        );
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        await response.ProblemAsync();
        Assert.Equal(before, await factory.CountDatasetRowsAsync());
    }

    [Fact]
    public async Task Upload_without_a_name_names_the_missing_field()
    {
        var file = new ByteArrayContent(Archives.Zip(TwoClasses()));
        var response = await client.PostAsync(
            "/api/datasets",
            new MultipartFormDataContent { { file, "file", "x.zip" } }
        );
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("name", (await response.ProblemAsync()).GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Deleting_an_unused_data_set_removes_it_and_its_images()
    {
        var created = await (
            await client.PostAsync("/api/datasets", Archives.DatasetForm("to delete", Archives.Zip(TwoClasses())))
        ).ReadAsync<DatasetResponse>();
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync($"/api/datasets/{created.Id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/api/datasets/{created.Id}")).StatusCode);
        Assert.Equal(
            0,
            await factory.QueryAsync(db => Task.FromResult(db.DatasetImages.Count(i => i.DatasetId == created.Id)))
        );
    }
}
