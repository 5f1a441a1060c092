using System.Net;
using System.Net.Http.Json;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using TransferApi.Features.Datasets;
using TransferApi.Features.Models;
using TransferApi.Features.TrainingJobs;
using TransferApi.Http;
using TransferApi.Persistence;
using TransferApi.Training;

namespace TransferApi.Tests;

/// <summary>Issue 15 through HTTP: a data set's health (near-duplicates, leakage, label issues), unlabeled images and
/// suggestions of which to label next, on real photos and copies the tests make.</summary>
[Collection(ServiceCollection.Name)]
public class DatasetHealthTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    private static byte[] Transform(byte[] photo, Action<IImageProcessingContext> change, int quality)
    {
        using var image = Image.Load<Rgb24>(photo);
        image.Mutate(change);
        using var buffer = new MemoryStream();
        image.SaveAsJpeg(buffer, new JpegEncoder { Quality = quality });
        return buffer.ToArray();
    }

    /// <summary>A copy resized to 80 % and re-encoded at JPEG quality 75 (the health benchmark finds every copy at half
    /// size and quality 40 only 91-94 % of the time, so "all found" is asserted on milder copies).</summary>
    private static byte[] ResizedCopy(byte[] photo) =>
        Transform(photo, x => x.Resize(x.GetCurrentSize().Width * 4 / 5, 0), 75);

    /// <summary>A copy re-encoded at JPEG quality 40.</summary>
    private static byte[] ReencodedCopy(byte[] photo) => Transform(photo, _ => { }, 40);

    [Fact]
    public async Task Copies_in_other_splits_are_leakage_until_a_resplit_keeps_them_together()
    {
        var entries = new List<(string, byte[])>();
        foreach (var label in new[] { "ants", "bees" })
            for (var i = 0; i < 14; i++)
            {
                var (name, photo) = Archives.Photo("train", label, i);
                entries.Add((name, photo));
                if (i < 4)
                    entries.Add(($"{label}/{i}-copy.jpg", i % 2 == 0 ? ResizedCopy(photo) : ReencodedCopy(photo)));
            }
        var dataset = await client.UploadDatasetAsync(
            "health",
            entries,
            ("validationFraction", "0.3"),
            ("testFraction", "0.2"),
            ("seed", "3")
        );
        var health = await client.ReadyHealthAsync(dataset.Id);
        var images = await client.DatasetImagesAsync(dataset.Id);
        var byName = images.ToDictionary(i => i.FileName, i => i);

        var pairs = new[] { "ants", "bees" }
            .SelectMany(label =>
                Enumerable.Range(0, 4).Select(i => (byName[$"{label}/{i}.jpg"], byName[$"{label}/{i}-copy.jpg"]))
            )
            .ToList();
        // Every copy is found with its original, and nothing else is grouped: these photos are all different.
        var named = images.ToDictionary(i => i.Id, i => i.FileName);
        Assert.True(
            pairs.Count == health.NearDuplicates.Count,
            string.Join(
                "; ",
                health.NearDuplicates.Select(g =>
                    string.Join(", ", g.Images.Select(i => named[i.ImageId])) + $" {g.Similarity}"
                )
            )
        );
        Assert.Equal(
            pairs.Select(p => new[] { p.Item1.Id, p.Item2.Id }.Order().ToList()).OrderBy(p => p[0]).ToList(),
            health
                .NearDuplicates.Select(g => g.Images.Select(i => i.ImageId).Order().ToList())
                .OrderBy(p => p[0])
                .ToList()
        );
        var split = pairs.Where(p => p.Item1.Split != p.Item2.Split).ToList();
        Assert.NotEmpty(split);
        Assert.Equal(
            split.Select(p => p.Item1.Id).Order(),
            health.Leakage.Select(g => g.Images.Single(i => pairs.Any(p => p.Item1.Id == i.ImageId)).ImageId).Order()
        );
        var summary = await (await client.GetAsync($"/api/datasets/{dataset.Id}")).ReadAsync<DatasetResponse>();
        Assert.Equal((split.Count, pairs.Count), (summary.Health.LeakingGroups, summary.Health.NearDuplicateGroups));

        var resplit = await client.PostAsJsonAsync($"/api/datasets/{dataset.Id}/split", new { seed = 3 });
        Assert.Equal(HttpStatusCode.OK, resplit.StatusCode);
        var after = await client.ReadyHealthAsync(dataset.Id);
        Assert.Empty(after.Leakage);
        Assert.Equal(health.NearDuplicates.Count, after.NearDuplicates.Count);
        var moved = (await client.DatasetImagesAsync(dataset.Id)).ToDictionary(i => i.Id, i => i.Split);
        Assert.All(pairs, p => Assert.Equal(moved[p.Item1.Id], moved[p.Item2.Id]));
        Assert.True(after.DatasetVersion > health.DatasetVersion);
    }

    [Fact]
    public async Task Labels_flipped_on_purpose_are_among_the_top_label_issues()
    {
        // 60 photos a class, 3 of each labelled as the other class (5 %).
        var entries = new List<(string, byte[])>();
        var flipped = new HashSet<string>();
        foreach (var (label, other) in new[] { ("ants", "bees"), ("bees", "ants") })
            for (var i = 0; i < 60; i++)
            {
                var photo =
                    i < 50 ? Archives.Photo("train", label, i).Item2 : Archives.Photo("val", label, i - 50).Item2;
                var given = i % 20 == 7 ? other : label;
                var name = $"{given}/{label}-{i}.jpg";
                if (given != label)
                    flipped.Add(name);
                entries.Add((name, photo));
            }
        var dataset = await client.UploadDatasetAsync("health", entries);
        var health = await client.ReadyHealthAsync(dataset.Id);
        var names = (await client.DatasetImagesAsync(dataset.Id)).ToDictionary(i => i.Id, i => i.FileName);
        var top = health.LabelIssues.Take(2 * flipped.Count).ToList();
        // The health benchmark finds 89 % of flipped ants-bees labels: at least 5 of these 6 must lead the list.
        Assert.True(
            top.Count(i => flipped.Contains(names[i.ImageId])) >= 5,
            $"top issues {string.Join(", ", top.Select(i => names[i.ImageId]))}; flipped {string.Join(", ", flipped)}"
        );
        Assert.All(top.Where(i => flipped.Contains(names[i.ImageId])), i => Assert.NotEqual(i.Label, i.SuggestedLabel));
        Assert.Equal([("ants", 60), ("bees", 60)], health.ClassBalance.Select(c => (c.Label, c.Images)).Order());
    }

    [Fact]
    public async Task Unlabeled_images_are_stored_and_listed_but_never_trained_on()
    {
        var entries = Archives.TwoClasses(8);
        entries.AddRange(
            Enumerable
                .Range(0, 5)
                .Select(i => Archives.Photo("val", i % 2 == 0 ? "ants" : "bees", i, $"unlabeled/{i}.jpg"))
        );
        var dataset = await client.UploadDatasetAsync("health", entries);
        Assert.Equal(new SplitCounts(12, 4, 0, 5), dataset.Splits);
        Assert.Equal(21, dataset.ImageCount);
        Assert.Equal(["ants", "bees"], dataset.Classes.Select(c => c.Name));

        // One more without a label through POST …/images.
        var form = new MultipartFormDataContent();
        form.Add(new ByteArrayContent(Archives.Photo("val", "bees", 7).Item2), "file", "extra.jpg");
        var added = await (
            await client.PostAsync($"/api/datasets/{dataset.Id}/images", form)
        ).ReadAsync<AddImagesResponse>();
        var extra = Assert.Single(added.Added);
        Assert.Equal((null, DataSplit.Unlabeled), (extra.Label, extra.Split));
        var unlabeled = await client.DatasetImagesAsync(dataset.Id, "&split=Unlabeled");
        Assert.Equal(6, unlabeled.Count);
        Assert.All(unlabeled, i => Assert.Null(i.Label));

        var job = await (
            await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 3 })
        ).ReadAsync<TrainingJobResponse>();
        var done = await client.WaitForJobAsync(job.Id, JobPolling.Ended);
        Assert.Equal(JobStatus.Succeeded, done.Status);
        var model = await (await client.GetAsync($"/api/models/{done.ModelId}")).ReadAsync<ModelResponse>();
        Assert.Equal((12, 4), (model.Metrics.TrainImages, model.Metrics.ValidationImages));
        Assert.Equal(["ants", "bees"], model.Labels);
        var evaluated = await (
            await client.GetAsync($"/api/training-jobs/{job.Id}/report/images?pageSize=200")
        ).ReadAsync<Page<EvaluatedImageResponse>>();
        Assert.Empty(evaluated.Items.Select(e => e.ImageId).Intersect(unlabeled.Select(u => u.Id)));

        // Labelling one moves it into a split by the data set's rules; a split alone is refused.
        var refused = await client.PatchAsJsonAsync(
            $"/api/datasets/{dataset.Id}/images/{unlabeled[1].Id}",
            new { split = "Train" }
        );
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        var labelled = await (
            await client.PatchAsJsonAsync(
                $"/api/datasets/{dataset.Id}/images/{unlabeled[0].Id}",
                new { label = "ants" }
            )
        ).ReadAsync<DatasetImageResponse>();
        Assert.Equal("ants", labelled.Label);
        Assert.Contains(labelled.Split, new[] { DataSplit.Train, DataSplit.Validation });
        var now = await (await client.GetAsync($"/api/datasets/{dataset.Id}")).ReadAsync<DatasetResponse>();
        Assert.Equal(5, now.Splits.Unlabeled);
        Assert.Equal(9, now.Classes.Single(c => c.Name == "ants").ImageCount);
    }

    /// <summary>The ranking itself is tested on made features in the core (DataHealthTests); here, that the service
    /// feeds it the unlabeled images, the right model, and keeps near-duplicates off one page.</summary>
    [Fact]
    public async Task Suggestions_rank_the_unlabeled_images_by_the_latest_model_without_two_copies()
    {
        var entries = Archives.TwoClasses(12);
        for (var i = 0; i < 4; i++)
        {
            entries.Add(Archives.Photo("val", "ants", i, $"unlabeled/ant-{i}.jpg"));
            entries.Add(Archives.Photo("val", "bees", i, $"unlabeled/bee-{i}.jpg"));
        }
        entries.Add(
            ("unlabeled/ant-0-copy.jpg", ReencodedCopy(entries.Single(e => e.Item1 == "unlabeled/ant-0.jpg").Item2))
        );
        var dataset = await client.UploadDatasetAsync("health", entries);
        await client.ReadyHealthAsync(dataset.Id);
        var names = (await client.DatasetImagesAsync(dataset.Id)).ToDictionary(i => i.Id, i => i.FileName);

        var quick = await (
            await client.GetAsync($"/api/datasets/{dataset.Id}/suggestions?count=20")
        ).ReadAsync<SuggestionsResponse>();
        Assert.Null(quick.ModelId);
        Assert.Equal(9, quick.UnlabeledImages);
        var ranked = quick.Items.Select(i => names[i.ImageId]).ToList();
        // Every unlabeled image but one of the two copies, each once, no labelled image.
        Assert.Equal(8, ranked.Distinct().Count());
        Assert.All(ranked, n => Assert.StartsWith("unlabeled/", n));
        Assert.False(ranked.Contains("unlabeled/ant-0.jpg") && ranked.Contains("unlabeled/ant-0-copy.jpg"));
        Assert.Equal(quick.Items.Select(i => i.Score).OrderDescending(), quick.Items.Select(i => i.Score));
        Assert.All(quick.Items, i => Assert.Contains(i.Predicted, new[] { "ants", "bees" }));

        // With a trained model the latest one ranks them; count limits the page.
        var job = await (
            await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset.Id, epochs = 5 })
        ).ReadAsync<TrainingJobResponse>();
        var done = await client.WaitForJobAsync(job.Id, JobPolling.Ended);
        Assert.Equal(
            0,
            (await (await client.GetAsync($"/api/models/{done.ModelId}")).ReadAsync<ModelResponse>())
                .Metrics
                .ImagesEmbedded
        );
        var byModel = await (
            await client.GetAsync($"/api/datasets/{dataset.Id}/suggestions?count=3&modelId={done.ModelId}")
        ).ReadAsync<SuggestionsResponse>();
        Assert.Equal(done.ModelId, byModel.ModelId);
        Assert.Equal(3, byModel.Items.Count);
        Assert.Equal(
            done.ModelId,
            (
                await (
                    await client.GetAsync($"/api/datasets/{dataset.Id}/suggestions")
                ).ReadAsync<SuggestionsResponse>()
            ).ModelId
        );
    }

    [Fact]
    public async Task Bad_requests_name_what_is_wrong_and_an_untrainable_data_set_is_ready_with_warnings()
    {
        var tiny = await client.UploadDatasetAsync("health", Archives.TwoClasses(2));
        var health = await client.ReadyHealthAsync(tiny.Id);
        Assert.Contains(health.Warnings, w => w.Contains("'ants' has 2 image(s)", StringComparison.Ordinal));
        Assert.Contains(health.Warnings, w => w.StartsWith("Label issues need", StringComparison.Ordinal));
        Assert.Empty(health.LabelIssues);

        async Task AssertProblemAsync(string url, HttpStatusCode status, string field)
        {
            var response = await client.GetAsync(url);
            Assert.Equal(status, response.StatusCode);
            Assert.StartsWith(
                $"{field}:",
                (await response.ReadAsync<Microsoft.AspNetCore.Mvc.ProblemDetails>()).Detail
            );
        }
        await AssertProblemAsync($"/api/datasets/{tiny.Id}/suggestions?count=0", HttpStatusCode.BadRequest, "count");
        await AssertProblemAsync($"/api/datasets/{tiny.Id}/suggestions?count=101", HttpStatusCode.BadRequest, "count");
        await AssertProblemAsync(
            $"/api/datasets/{tiny.Id}/suggestions?modelId={Guid.NewGuid()}",
            HttpStatusCode.NotFound,
            "modelId"
        );
        await AssertProblemAsync(
            $"/api/datasets/{tiny.Id}/health?backbone=no-such",
            HttpStatusCode.BadRequest,
            "backbone"
        );
        await AssertProblemAsync($"/api/datasets/{Guid.NewGuid()}/health", HttpStatusCode.NotFound, "id");

        // A model of other labels is refused by name.
        var other = await client.UploadDatasetAsync(
            "health",
            Archives.TwoClasses(6).Select(e => (e.Item1.Replace("ants", "wasps", StringComparison.Ordinal), e.Item2))
        );
        var job = await (
            await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = other.Id, epochs = 2 })
        ).ReadAsync<TrainingJobResponse>();
        var done = await client.WaitForJobAsync(job.Id, JobPolling.Ended);
        await AssertProblemAsync(
            $"/api/datasets/{tiny.Id}/suggestions?modelId={done.ModelId}",
            HttpStatusCode.BadRequest,
            "modelId"
        );

        // A data set deleted right after its upload: its health run ends quietly and the row goes with it.
        var gone = await client.UploadDatasetAsync("health", Archives.TwoClasses(12));
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync($"/api/datasets/{gone.Id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/api/datasets/{gone.Id}/health")).StatusCode);
    }
}
