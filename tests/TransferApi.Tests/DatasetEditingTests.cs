using System.Net;
using System.Net.Http.Json;
using TransferApi.Features.Datasets;
using TransferApi.Http;
using TransferApi.Training;

namespace TransferApi.Tests;

[Collection(ServiceCollection.Name)]
public class DatasetEditingTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    [Fact]
    public async Task Images_without_split_folders_are_split_per_class_reproducibly()
    {
        var entries = Archives.TwoClasses(8);
        var fields = new[] { ("validationFraction", "0.25"), ("testFraction", "0.25"), ("seed", "7") };
        var first = await client.UploadDatasetAsync("editing", entries, fields);
        Assert.All(first.Classes, c => Assert.Equal((4, 2, 2), (c.Train, c.Validation, c.Test)));
        Assert.Equal(new SplitCounts(8, 4, 4, 0), first.Splits);
        Assert.Equal(new SplitSettings(0.25, 0.25, 7), first.Split);

        var second = await client.UploadDatasetAsync("editing", entries, fields);
        var splitsOf = async (Guid id) =>
            (await client.DatasetImagesAsync(id)).OrderBy(i => i.FileName).Select(i => (i.FileName, i.Split)).ToList();
        Assert.Equal(await splitsOf(first.Id), await splitsOf(second.Id));
    }

    [Fact]
    public async Task A_lone_train_folder_fixes_nothing_and_is_split_by_the_fractions()
    {
        var dataset = await client.UploadDatasetAsync(
            "editing",
            Archives.TwoClasses(5).Select(e => ($"train/{e.Item1}", e.Item2)),
            ("validationFraction", "0.2")
        );
        Assert.Equal(new SplitCounts(8, 2, 0, 0), dataset.Splits);
        Assert.Equal(["ants", "bees"], dataset.Classes.Select(c => c.Name));
    }

    [Fact]
    public async Task Resplitting_moves_seeded_images_but_keeps_folder_and_client_splits()
    {
        var entries = Archives
            .TwoClasses(6)
            .Select(e => ($"train/{e.Item1}", e.Item2))
            .Concat([
                Archives.Photo("val", "ants", 0, "val/ants/v.jpg"),
                Archives.Photo("val", "bees", 0, "val/bees/v.jpg"),
            ]);
        var dataset = await client.UploadDatasetAsync("editing", entries);
        Assert.Equal(new SplitCounts(12, 2, 0, 0), dataset.Splits);
        var resplit = await client.PostAsJsonAsync(
            $"/api/datasets/{dataset.Id}/split",
            new { validationFraction = 0.5, seed = 3 }
        );
        Assert.Equal(HttpStatusCode.OK, resplit.StatusCode);
        Assert.Equal(new SplitCounts(12, 2, 0, 0), (await resplit.ReadAsync<DatasetResponse>()).Splits);

        var loose = await client.UploadDatasetAsync("editing", Archives.TwoClasses(6));
        var moved = await (
            await client.PostAsJsonAsync(
                $"/api/datasets/{loose.Id}/split",
                new
                {
                    validationFraction = 0.5,
                    testFraction = 0.0,
                    seed = 3,
                }
            )
        ).ReadAsync<DatasetResponse>();
        Assert.Equal(new SplitCounts(6, 6, 0, 0), moved.Splits);

        var bad = await client.PostAsJsonAsync(
            $"/api/datasets/{loose.Id}/split",
            new { validationFraction = 0.7, testFraction = 0.3 }
        );
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.True((await bad.ProblemAsync()).GetProperty("errors").TryGetProperty("testFraction", out _));
    }

    [Fact]
    public async Task Images_can_be_added_relabelled_moved_and_removed()
    {
        var dataset = await client.UploadDatasetAsync("editing", Archives.TwoClasses(2));
        var wasps = new[]
        {
            ("w1.png", Archives.NoisePng(40, 30, 1)),
            ("w2.png", Archives.NoisePng(40, 30, 2)),
            ("w2-again.png", Archives.NoisePng(40, 30, 2)),
            ("notes.txt", "hello"u8.ToArray()),
        };
        var add = await client.PostAsync($"/api/datasets/{dataset.Id}/images", Archives.ImagesForm("wasps", wasps));
        Assert.Equal(HttpStatusCode.OK, add.StatusCode);
        var added = await add.ReadAsync<AddImagesResponse>();
        Assert.Equal(["w1.png", "w2.png"], added.Added.Select(a => a.FileName));
        Assert.All(added.Added, a => Assert.Equal(("wasps", 40, 30, "PNG"), (a.Label, a.Width, a.Height, a.Format)));
        Assert.Equal(["w2-again.png", "notes.txt"], added.Rejected.Select(r => r.Entry));
        Assert.Contains("duplicate", added.Rejected[0].Reason);

        var sameBytesOtherLabel = await (
            await client.PostAsync(
                $"/api/datasets/{dataset.Id}/images",
                Archives.ImagesForm("hornets", [("h.png", Archives.NoisePng(40, 30, 1))])
            )
        ).ReadAsync<AddImagesResponse>();
        Assert.Empty(sameBytesOtherLabel.Added);
        Assert.Contains("conflict", Assert.Single(sameBytesOtherLabel.Rejected).Reason);

        var image = added.Added[0];
        var patched = await client.PatchAsJsonAsync(
            $"/api/datasets/{dataset.Id}/images/{image.Id}",
            new { label = "hornets", split = "Test" }
        );
        Assert.Equal(HttpStatusCode.OK, patched.StatusCode);
        Assert.Equal(
            ("hornets", DataSplit.Test, true),
            (await patched.ReadAsync<DatasetImageResponse>()) is var p ? (p.Label, p.Split, p.SplitFixed) : default
        );

        Assert.Equal(
            HttpStatusCode.NoContent,
            (await client.DeleteAsync($"/api/datasets/{dataset.Id}/images/{added.Added[1].Id}")).StatusCode
        );
        Assert.Equal(
            HttpStatusCode.NotFound,
            (await client.DeleteAsync($"/api/datasets/{dataset.Id}/images/{added.Added[1].Id}")).StatusCode
        );

        var now = await (await client.GetAsync($"/api/datasets/{dataset.Id}")).ReadAsync<DatasetResponse>();
        Assert.Equal([("ants", 2), ("bees", 2), ("hornets", 1)], now.Classes.Select(c => (c.Name, c.ImageCount)));
        Assert.False(now.Trainable);
        Assert.Contains(now.Problems, x => x.Contains("'hornets'"));
        Assert.Equal(40, now.ImageStats!.MinWidth);
    }

    [Fact]
    public async Task Exif_orientation_is_applied_before_sizes_are_recorded()
    {
        var dataset = await client.UploadDatasetAsync("editing", Archives.TwoClasses(2));
        using var image = new SixLabors.ImageSharp.Image<SixLabors.ImageSharp.PixelFormats.Rgb24>(40, 30);
        image.Metadata.ExifProfile = new SixLabors.ImageSharp.Metadata.Profiles.Exif.ExifProfile();
        // Rotate 90 degrees.
        image.Metadata.ExifProfile.SetValue(SixLabors.ImageSharp.Metadata.Profiles.Exif.ExifTag.Orientation, (ushort)6);
        using var jpeg = new MemoryStream();
        await SixLabors.ImageSharp.ImageExtensions.SaveAsJpegAsync(image, jpeg);

        var added = await (
            await client.PostAsync(
                $"/api/datasets/{dataset.Id}/images",
                Archives.ImagesForm("rotated", [("r.jpg", jpeg.ToArray())])
            )
        ).ReadAsync<AddImagesResponse>();
        Assert.Equal((30, 40), (added.Added[0].Width, added.Added[0].Height));
    }

    [Fact]
    public async Task Adding_images_names_the_field_at_fault()
    {
        var dataset = await client.UploadDatasetAsync("editing", Archives.TwoClasses(2));
        var noLabel = await client.PostAsync(
            $"/api/datasets/{dataset.Id}/images",
            Archives.ImagesForm("  ", [("a.png", Archives.NoisePng(8, 8, 1))])
        );
        Assert.Equal(HttpStatusCode.BadRequest, noLabel.StatusCode);
        Assert.True((await noLabel.ProblemAsync()).GetProperty("errors").TryGetProperty("label", out _));
        var noFiles = await client.PostAsync($"/api/datasets/{dataset.Id}/images", Archives.ImagesForm("wasps", []));
        Assert.Equal(HttpStatusCode.BadRequest, noFiles.StatusCode);
        var unknown = await client.PostAsync(
            $"/api/datasets/{Guid.NewGuid()}/images",
            Archives.ImagesForm("wasps", [("a.png", Archives.NoisePng(8, 8, 1))])
        );
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        var tooBig = await client.PostAsync(
            $"/api/datasets/{dataset.Id}/images",
            Archives.ImagesForm("wasps", [("a.png", Archives.Png(2500, 2500, default))])
        );
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooBig.StatusCode);
        Assert.Equal(4, (await client.DatasetImagesAsync(dataset.Id)).Count);
    }

    [Fact]
    public async Task Concurrent_additions_to_one_data_set_store_each_image_once()
    {
        var dataset = await client.UploadDatasetAsync("editing", Archives.TwoClasses(2));
        var shared = Archives.NoisePng(32, 32, 100);
        var requests = Enumerable
            .Range(0, 6)
            .Select(r =>
                client.PostAsync(
                    $"/api/datasets/{dataset.Id}/images",
                    Archives.ImagesForm(
                        "wasps",
                        Enumerable
                            .Range(0, 3)
                            .Select(k => ($"r{r}-{k}.png", Archives.NoisePng(32, 32, 1000 + r * 10 + k)))
                            .Append(($"r{r}-shared.png", shared))
                    )
                )
            );
        var responses = await Task.WhenAll(requests);
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        var results = await Task.WhenAll(responses.Select(r => r.ReadAsync<AddImagesResponse>()));
        Assert.Equal(6 * 3 + 1, results.Sum(r => r.Added.Count));
        Assert.Equal(5, results.Sum(r => r.Rejected.Count));
        var images = await client.DatasetImagesAsync(dataset.Id);
        Assert.Equal(4 + 19, images.Count);
        Assert.Equal(images.Count, images.Select(i => i.Sha256).Distinct().Count());
    }
}
