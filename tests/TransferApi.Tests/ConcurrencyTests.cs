using System.Net;
using System.Net.Http.Json;
using Microsoft.EntityFrameworkCore;
using TransferApi.Features.Datasets;
using TransferApi.Features.Models;
using TransferApi.Features.TrainingJobs;
using TransferApi.Http;
using TransferApi.Persistence;
using TransferApi.Training.Backbones;
using Xunit.Abstractions;

namespace TransferApi.Tests;

/// <summary>
/// Pairs of requests where one can delete or change what the other checks, started together behind a barrier
/// (one side delayed by a few seeded milliseconds, so both orders happen) many times each. Every answer must be
/// one a sequential client could get, in a combination a sequence could produce; never a 500. The database's
/// invariants hold afterwards.
/// </summary>
[Collection(ServiceCollection.Name)]
public class ConcurrencyTests(TransferApiFactory factory, ITestOutputHelper output)
{
    private const int Rounds = 12;
    private readonly HttpClient client = factory.CreateClient();
    private readonly Random jitter = new(19);

    [Fact]
    public async Task Creating_a_job_while_its_data_set_is_deleted_answers_202_and_409_or_400_and_204()
    {
        var outcomes = new List<(HttpStatusCode, HttpStatusCode)>();
        for (var round = 0; round < Rounds; round++)
        {
            var dataset = await UploadAsync($"job-vs-delete {round}");
            var (create, delete) = await RaceAsync(
                () => client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset, epochs = 1 }),
                () => client.DeleteAsync($"/api/datasets/{dataset}")
            );
            outcomes.Add((create.StatusCode, delete.StatusCode));
            if (create.StatusCode == HttpStatusCode.Accepted)
            {
                Assert.Equal(HttpStatusCode.Conflict, delete.StatusCode);
                Assert.Equal("Data set in use", (await delete.ProblemAsync()).GetProperty("title").GetString());
            }
            else
            {
                Assert.Equal(
                    (HttpStatusCode.BadRequest, HttpStatusCode.NoContent),
                    (create.StatusCode, delete.StatusCode)
                );
                Assert.Contains(
                    "No data set has id",
                    (await create.ProblemAsync()).GetProperty("errors").GetProperty("datasetId")[0].GetString()
                );
            }
        }
        Report(outcomes);
        await AssertInvariantsAsync();
    }

    [Fact]
    public async Task Adding_images_resplitting_and_editing_while_the_data_set_is_deleted_answer_as_in_some_order()
    {
        var outcomes = new List<(HttpStatusCode, HttpStatusCode)>();
        for (var round = 0; round < Rounds; round++)
        {
            var dataset = await UploadAsync($"edit-vs-delete {round}");
            var image = (
                await (await client.GetAsync($"/api/datasets/{dataset}/images")).ReadAsync<Page<DatasetImageResponse>>()
            )
                .Items[0]
                .Id;
            Func<Task<HttpResponseMessage>> edit = (round % 3) switch
            {
                0 => () =>
                    client.PostAsync(
                        $"/api/datasets/{dataset}/images",
                        Archives.ImagesForm("cats", [("new.png", Archives.NoisePng(24, 24, 90_000 + round))])
                    ),
                1 => () =>
                    client.PostAsJsonAsync(
                        $"/api/datasets/{dataset}/split",
                        new { validationFraction = 0.5, seed = round }
                    ),
                _ => () =>
                    client.PatchAsJsonAsync(
                        $"/api/datasets/{dataset}/images/{image}",
                        new { label = "dogs", split = "Test" }
                    ),
            };
            var (change, delete) = await RaceAsync(edit, () => client.DeleteAsync($"/api/datasets/{dataset}"));
            outcomes.Add((change.StatusCode, delete.StatusCode));
            Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
            Assert.Contains(change.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.NotFound });
            if (change.StatusCode == HttpStatusCode.NotFound)
                Assert.EndsWith("not found", (await change.ProblemAsync()).GetProperty("title").GetString());
        }
        Report(outcomes);
        await AssertInvariantsAsync();
    }

    [Fact]
    public async Task Editing_an_image_being_deleted_answers_200_or_404_and_bytes_added_twice_at_once_are_stored_once()
    {
        var dataset = await UploadAsync("image races");
        var outcomes = new List<(HttpStatusCode, HttpStatusCode)>();
        for (var round = 0; round < Rounds; round++)
        {
            var added = await (
                await client.PostAsync(
                    $"/api/datasets/{dataset}/images",
                    Archives.ImagesForm("cats", [($"{round}.png", Archives.NoisePng(24, 24, 70_000 + round))])
                )
            ).ReadAsync<AddImagesResponse>();
            var image = Assert.Single(added.Added).Id;
            var (edit, delete) = await RaceAsync(
                () => client.PatchAsJsonAsync($"/api/datasets/{dataset}/images/{image}", new { label = "dogs" }),
                () => client.DeleteAsync($"/api/datasets/{dataset}/images/{image}")
            );
            outcomes.Add((edit.StatusCode, delete.StatusCode));
            Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
            Assert.Contains(edit.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.NotFound });
        }
        Report(outcomes);

        // Three clients add the same new image at once: one stores it, the others are told it is a duplicate.
        for (var round = 0; round < Rounds / 2; round++)
        {
            var bytes = Archives.NoisePng(24, 24, 80_000 + round);
            var answers = await Task.WhenAll(
                Enumerable
                    .Range(0, 3)
                    .Select(_ =>
                        Task.Run(() =>
                            client.PostAsync(
                                $"/api/datasets/{dataset}/images",
                                Archives.ImagesForm("cats", [("same.png", bytes)])
                            )
                        )
                    )
            );
            Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.StatusCode));
            var bodies = await Task.WhenAll(answers.Select(a => a.ReadAsync<AddImagesResponse>()));
            Assert.Equal(1, bodies.Sum(b => b.Added.Count));
            Assert.Equal(
                2,
                bodies.Sum(b => b.Rejected.Count(r => r.Reason.StartsWith("duplicate", StringComparison.Ordinal)))
            );
        }
        await AssertInvariantsAsync();
    }

    [Fact]
    public async Task Naming_aliasing_and_deleting_the_same_model_at_once_answer_as_in_some_order()
    {
        var template = await TrainModelAsync();
        var outcomes = new List<(HttpStatusCode, HttpStatusCode)>();
        var name = $"race-{Guid.NewGuid():N}"[..16];
        for (var round = 0; round < Rounds; round++)
        {
            var model = await CopyModelAsync(template);
            Assert.Equal(
                HttpStatusCode.OK,
                (await client.PatchAsJsonAsync($"/api/models/{model}", new { name })).StatusCode
            );
            Func<Task<HttpResponseMessage>> change =
                round % 2 == 0
                    ? () => client.PutAsync($"/api/models/{model}/aliases/prod", null)
                    : () => client.PatchAsJsonAsync($"/api/models/{model}", new { name = name + "-renamed" });
            var (changed, delete) = await RaceAsync(change, () => client.DeleteAsync($"/api/models/{model}"));
            outcomes.Add((changed.StatusCode, delete.StatusCode));
            Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
            Assert.Contains(changed.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.NotFound });
            if (changed.StatusCode == HttpStatusCode.NotFound)
                Assert.Equal("Model not found", (await changed.ProblemAsync()).GetProperty("title").GetString());
        }
        Report(outcomes);

        // Moving an alias while its model is renamed: the alias ends under the model's current name or not at all.
        for (var round = 0; round < Rounds / 2; round++)
        {
            var model = await CopyModelAsync(template);
            Assert.Equal(
                HttpStatusCode.OK,
                (await client.PatchAsJsonAsync($"/api/models/{model}", new { name })).StatusCode
            );
            var (alias, rename) = await RaceAsync(
                () => client.PutAsync($"/api/models/{model}/aliases/staging", null),
                () => client.PatchAsJsonAsync($"/api/models/{model}", new { name = $"{name}-{round}" })
            );
            Assert.Equal((HttpStatusCode.OK, HttpStatusCode.OK), (alias.StatusCode, rename.StatusCode));
        }

        // The same model deleted twice at once: one 204, one 404.
        var twice = await CopyModelAsync(template);
        var (first, second) = await RaceAsync(
            () => client.DeleteAsync($"/api/models/{twice}"),
            () => client.DeleteAsync($"/api/models/{twice}")
        );
        Assert.Equal(
            new[] { HttpStatusCode.NoContent, HttpStatusCode.NotFound },
            new[] { first.StatusCode, second.StatusCode }.Order()
        );
        await AssertInvariantsAsync();
    }

    [Fact]
    public async Task Models_named_at_once_get_one_version_each()
    {
        var template = await TrainModelAsync();
        var models = new List<Guid>();
        for (var k = 0; k < 8; k++)
            models.Add(await CopyModelAsync(template));
        var name = $"versions-{Guid.NewGuid():N}"[..16];
        var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var namings = models
            .Select(m =>
                Task.Run(async () =>
                {
                    await start.Task;
                    return await client.PatchAsJsonAsync($"/api/models/{m}", new { name });
                })
            )
            .ToList();
        start.SetResult();
        var answers = await Task.WhenAll(namings);
        Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.StatusCode));
        var versions = (await Task.WhenAll(answers.Select(a => a.ReadAsync<ModelResponse>())))
            .Select(m => m.Version!.Value)
            .Order();
        Assert.Equal(Enumerable.Range(1, models.Count), versions);
        await AssertInvariantsAsync();
    }

    [Fact]
    public async Task Creating_a_job_while_its_backbone_is_deleted_answers_202_and_409_or_400_and_204()
    {
        var dataset = await UploadAsync("backbone races");
        var weights = RandomWeights.PyTorchFile(
            RandomWeights.StateDict(BackboneArchitecture.Find("mobilenet_v2")!, seed: 5)
        );
        var outcomes = new List<(HttpStatusCode, HttpStatusCode)>();
        for (var round = 0; round < Rounds / 2; round++)
        {
            // The same weights under a new id each round: stored once, registered in a moment.
            var id = $"race-{round}-{Guid.NewGuid():N}"[..20];
            var form = new MultipartFormDataContent
            {
                { new ByteArrayContent(weights), "file", "mobilenet.pth" },
                { new StringContent("mobilenet_v2"), "architecture" },
                { new StringContent(id), "id" },
            };
            Assert.Equal(HttpStatusCode.Created, (await client.PostAsync("/api/backbones", form)).StatusCode);
            var (create, delete) = await RaceAsync(
                () =>
                    client.PostAsJsonAsync(
                        "/api/training-jobs",
                        new
                        {
                            datasetId = dataset,
                            backbone = id,
                            epochs = 1,
                        }
                    ),
                () => client.DeleteAsync($"/api/backbones/{id}")
            );
            outcomes.Add((create.StatusCode, delete.StatusCode));
            if (create.StatusCode == HttpStatusCode.Accepted)
            {
                Assert.Equal(HttpStatusCode.Conflict, delete.StatusCode);
                Assert.Equal("Backbone in use", (await delete.ProblemAsync()).GetProperty("title").GetString());
                var job = await create.ReadAsync<TrainingJobResponse>();
                Assert.Equal(JobStatus.Succeeded, (await client.WaitForJobAsync(job.Id, JobPolling.Ended)).Status);
            }
            else
            {
                Assert.Equal(
                    (HttpStatusCode.BadRequest, HttpStatusCode.NoContent),
                    (create.StatusCode, delete.StatusCode)
                );
                Assert.Contains(
                    "No backbone is",
                    (await create.ProblemAsync()).GetProperty("errors").GetProperty("backbone")[0].GetString()
                );
            }
        }
        Report(outcomes);
    }

    [Fact]
    public async Task Cancelling_a_queued_job_twice_at_once_answers_202_then_409()
    {
        var dataset = await UploadAsync("cancel twice");
        var outcomes = new List<(HttpStatusCode, HttpStatusCode)>();
        for (var round = 0; round < Rounds / 2; round++)
        {
            var job = await (
                await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset, epochs = 1 })
            ).ReadAsync<TrainingJobResponse>();
            var (a, b) = await RaceAsync(
                () => client.PostAsync($"/api/training-jobs/{job.Id}/cancel", null),
                () => client.PostAsync($"/api/training-jobs/{job.Id}/cancel", null)
            );
            outcomes.Add((a.StatusCode, b.StatusCode));
            // Both may be accepted when the job had already started (both ask the worker to stop); otherwise the second
            // is told it ended.
            Assert.Contains(HttpStatusCode.Accepted, new[] { a.StatusCode, b.StatusCode });
            Assert.All(new[] { a.StatusCode, b.StatusCode }, s =>
                Assert.Contains(s, new[] { HttpStatusCode.Accepted, HttpStatusCode.Conflict })
            );
            var ended = await client.WaitForJobAsync(job.Id, JobPolling.Ended);
            Assert.Contains(ended.Status, new[] { JobStatus.Cancelled, JobStatus.Succeeded });
        }
        Report(outcomes);
    }

    /// <summary>Starts both requests together, one of them a few (seeded) milliseconds later, and returns both
    /// answers.</summary>
    private async Task<(HttpResponseMessage A, HttpResponseMessage B)> RaceAsync(
        Func<Task<HttpResponseMessage>> a,
        Func<Task<HttpResponseMessage>> b
    )
    {
        var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var (delayA, delayB) = jitter.Next(2) == 0 ? (jitter.Next(6), 0) : (0, jitter.Next(6));
        var first = Task.Run(async () =>
        {
            await start.Task;
            await Task.Delay(delayA);
            return await a();
        });
        var second = Task.Run(async () =>
        {
            await start.Task;
            await Task.Delay(delayB);
            return await b();
        });
        start.SetResult();
        var answers = (await first, await second);
        foreach (var answer in new[] { answers.Item1, answers.Item2 })
            Assert.True(
                (int)answer.StatusCode < 500,
                $"{answer.RequestMessage?.Method} {answer.RequestMessage?.RequestUri}: {(int)answer.StatusCode} "
                    + $"{await answer.Content.ReadAsStringAsync()}"
            );
        return answers;
    }

    private void Report(List<(HttpStatusCode, HttpStatusCode)> outcomes)
    {
        foreach (var group in outcomes.GroupBy(o => o))
            output.WriteLine($"{(int)group.Key.Item1} + {(int)group.Key.Item2}: {group.Count()}x");
    }

    /// <summary>A small trainable data set of random images (3 per class, so each class keeps training
    /// images).</summary>
    private async Task<Guid> UploadAsync(string name)
    {
        var seed = Math.Abs(name.GetHashCode(StringComparison.Ordinal)) % 100_000 * 10;
        var zip = Archives.Zip(
            Enumerable
                .Range(0, 6)
                .Select(i => ($"{(i % 2 == 0 ? "cats" : "dogs")}/{i}.png", Archives.NoisePng(24, 24, seed + i)))
        );
        var created = await client.PostAsync("/api/datasets", Archives.DatasetForm(name, zip));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        return (await created.ReadAsync<DatasetResponse>()).Id;
    }

    private async Task<Guid> TrainModelAsync()
    {
        var dataset = await UploadAsync($"template {Guid.NewGuid()}");
        var job = await (
            await client.PostAsJsonAsync("/api/training-jobs", new { datasetId = dataset, epochs = 1 })
        ).ReadAsync<TrainingJobResponse>();
        var ended = await client.WaitForJobAsync(job.Id, JobPolling.Ended);
        Assert.Equal(JobStatus.Succeeded, ended.Status);
        return ended.ModelId!.Value;
    }

    /// <summary>Another model with the template's weights (and a finished job of its own), written directly: the races
    /// are about the rows.</summary>
    private Task<Guid> CopyModelAsync(Guid template) =>
        factory.QueryAsync(async db =>
        {
            var source = await db.Models.AsNoTracking().SingleAsync(m => m.Id == template);
            var sourceJob = await db.TrainingJobs.AsNoTracking().SingleAsync(j => j.Id == source.JobId);
            var job = new TrainingJob
            {
                Id = Guid.CreateVersion7(),
                Tenant = source.Tenant,
                DatasetId = source.DatasetId,
                Status = JobStatus.Succeeded,
                CreatedAt = DateTime.UtcNow,
                FinishedAt = DateTime.UtcNow,
                Backbone = source.Backbone,
                Options = sourceJob.Options,
                Progress = sourceJob.Progress,
            };
            var model = new TrainedModel
            {
                Id = Guid.CreateVersion7(),
                Tenant = source.Tenant,
                JobId = job.Id,
                DatasetId = source.DatasetId,
                Backbone = source.Backbone,
                Labels = source.Labels,
                Preprocessing = source.Preprocessing,
                FeatureSize = source.FeatureSize,
                Head = source.Head,
                HeadWeights = source.HeadWeights,
                CreatedAt = DateTime.UtcNow,
            };
            job.ModelId = model.Id;
            db.TrainingJobs.Add(job);
            await db.SaveChangesAsync();
            db.Models.Add(model);
            await db.SaveChangesAsync();
            return model.Id;
        });

    /// <summary>What no interleaving may break: references, one version per name, aliases under their model's name,
    /// each image once per data set.</summary>
    private Task AssertInvariantsAsync() =>
        factory.QueryAsync(async db =>
        {
            Assert.Equal(
                0,
                await Count(
                    db,
                    """
                    SELECT count(*) AS "Value" FROM training_jobs j WHERE NOT EXISTS (SELECT 1 FROM datasets d
                    WHERE d."Id" = j."DatasetId")
                    """
                )
            );
            Assert.Equal(
                0,
                await Count(
                    db,
                    """
                    SELECT count(*) AS "Value" FROM model_aliases a LEFT JOIN models m ON m."Id" = a."ModelId"
                    WHERE m."Id" IS NULL OR m."Name" IS DISTINCT FROM a."Name" 
                    """
                )
            );
            Assert.Equal(
                0,
                await Count(
                    db,
                    """
                    SELECT count(*) AS "Value" FROM (SELECT 1 FROM models WHERE "Name" IS NOT NULL GROUP BY
                    "Tenant", "Name", "Version" HAVING count(*) > 1) v
                    """
                )
            );
            Assert.Equal(
                0,
                await Count(
                    db,
                    """
                    SELECT count(*) AS "Value" FROM (SELECT 1 FROM dataset_images GROUP BY "DatasetId", "Sha256"
                    HAVING count(*) > 1) d
                    """
                )
            );
            Assert.Equal(
                0,
                await Count(
                    db,
                    """
                    SELECT count(*) AS "Value" FROM training_jobs j WHERE j."ModelId" IS NOT NULL AND NOT EXISTS
                    (SELECT 1 FROM models m WHERE m."Id" = j."ModelId")
                    """
                )
            );
            return 0;
        });

    private static Task<int> Count(TransferDbContext db, string sql) => db.Database.SqlQueryRaw<int>(sql).SingleAsync();
}
