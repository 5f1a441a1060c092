using System.IO.Compression;
using System.Net;
using System.Net.Http.Json;
using Microsoft.EntityFrameworkCore;
using TransferApi.Features.Backbones;
using TransferApi.Features.Datasets;
using TransferApi.Features.Models;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;
using TransferApi.Training.Backbones;
using Xunit.Abstractions;

namespace TransferApi.Tests;

/// <summary>Operators bring their own weights: register, train on, predict with, export and delete backbones of every
/// architecture.</summary>
[Collection(ServiceCollection.Name)]
public class BackboneRegistrationTests(TransferApiFactory factory, ITestOutputHelper output)
{
    private readonly HttpClient client = factory.CreateClient();

    public static TheoryData<string, int> Architectures =>
        new()
        {
            { "resnet18", 0 },
            { "resnet34", 0 },
            { "resnet50", 0 },
            { "mobilenet_v2", 1 },
            { "vgg16", 0 },
            { "inception_v3", 0 },
        };

    private static MultipartFormDataContent Form(
        string? architecture,
        byte[] weights,
        string fileName,
        params (string Field, string Value)[] fields
    )
    {
        var form = new MultipartFormDataContent { { new ByteArrayContent(weights), "file", fileName } };
        if (architecture is not null)
            form.Add(new StringContent(architecture), "architecture");
        foreach (var (field, value) in fields)
            form.Add(new StringContent(value), field);
        return form;
    }

    private async Task<BackboneResponse> RegisterAsync(
        string architecture,
        byte[] weights,
        string fileName,
        params (string Field, string Value)[] fields
    )
    {
        var response = await client.PostAsync("/api/backbones", Form(architecture, weights, fileName, fields));
        Assert.True(
            response.StatusCode == HttpStatusCode.Created,
            $"{response.StatusCode}: {await response.Content.ReadAsStringAsync()}"
        );
        Assert.StartsWith("/api/backbones/", response.Headers.Location?.OriginalString);
        return await response.ReadAsync<BackboneResponse>();
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public async Task Registered_weights_of_each_architecture_train_a_model_that_predicts_and_exports(
        string name,
        int unfreezeStages
    )
    {
        var architecture = BackboneArchitecture.Find(name)!;
        var weights = RandomWeights.PyTorchFile(RandomWeights.StateDict(architecture, seed: name.Length));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var backbone = await RegisterAsync(name, weights, $"{name}-imagenet.pth");
        output.WriteLine($"{name}: {weights.Length / 1e6:F1} MB registered in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.Equal(
            (name, architecture.FeatureSize, architecture.Stages, false),
            (backbone.Architecture, backbone.FeatureSize, backbone.Stages, backbone.Default)
        );
        Assert.Equal(name == "inception_v3" ? 299 : 224, backbone.InputSize);
        Assert.Equal(
            name == "inception_v3" ? [0.5f, 0.5f, 0.5f] : [0.485f, 0.456f, 0.406f],
            backbone.Preprocessing.ChannelMean
        );
        Assert.Contains($"{name}-imagenet.pth (PyTorch", backbone.Source);
        Assert.Equal(64, backbone.WeightsSha256!.Length);
        Assert.Contains((await (await client.GetAsync("/api/backbones")).ReadAsync<List<BackboneResponse>>()), b =>
            b.Id == backbone.Id
        );

        var dataset = await (
            await client.PostAsync(
                "/api/datasets",
                Archives.DatasetForm($"{name} data", Archives.Zip(Archives.TwoClasses(3)))
            )
        ).ReadAsync<DatasetResponse>();
        var start = await client.PostAsJsonAsync(
            "/api/training-jobs",
            new
            {
                datasetId = dataset.Id,
                backbone = backbone.Id,
                epochs = 3,
                unfreezeStages,
                fineTuneEpochs = 1,
            }
        );
        Assert.Equal(HttpStatusCode.Accepted, start.StatusCode);
        var job = await client.WaitForJobAsync(
            (await start.ReadAsync<TrainingJobResponse>()).Id,
            JobPolling.Ended,
            seconds: 300
        );
        Assert.True(job.Status == JobStatus.Succeeded, $"job ended {job.Status}: {job.Error}");
        var model = await (await client.GetAsync($"/api/models/{job.ModelId}")).ReadAsync<ModelResponse>();
        Assert.Equal(backbone.Id, model.Backbone);

        var predicted = await client.PostAsync(
            $"/api/models/{model.Id}/predict",
            Archives.ImageForm(Archives.Photo("val", "bees", 0).Item2)
        );
        Assert.Equal(HttpStatusCode.OK, predicted.StatusCode);
        var answer = await predicted.ReadAsync<PredictResponse>();
        Assert.Equal(["ants", "bees"], answer.Predictions.Select(p => p.Label).Order());
        Assert.Equal(1.0, answer.Predictions.Sum(p => p.Probability), 3);

        // The export carries the architecture and its preprocessing.
        var export = await client.GetAsync($"/api/models/{model.Id}/export?format=pytorch");
        Assert.Equal(HttpStatusCode.OK, export.StatusCode);
        using (var zip = new ZipArchive(await export.Content.ReadAsStreamAsync()))
        {
            Assert.NotNull(zip.GetEntry("model.pt"));
            using var manifest = new StreamReader(zip.GetEntry("model.json")!.Open());
            var text = await manifest.ReadToEndAsync();
            Assert.Contains(architecture.Description, text);
            Assert.Contains(name == "inception_v3" ? "\"resizeTo\": 342" : "\"resizeTo\": 256", text);
        }

        // A backbone that a model uses stays.
        var delete = await client.DeleteAsync($"/api/backbones/{backbone.Id}");
        Assert.Equal(HttpStatusCode.Conflict, delete.StatusCode);
        Assert.Contains("1 model(s)", (await delete.ProblemAsync()).GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Mismatched_or_unreadable_weights_are_refused_naming_the_problem_and_nothing_is_stored()
    {
        var before = await factory.QueryAsync(async db =>
            (await db.BackboneWeights.CountAsync(), await db.Backbones.CountAsync())
        );
        var resnet18 = RandomWeights.PyTorchFile(RandomWeights.StateDict(BackboneArchitecture.ResNet18));

        var wrongArchitecture = await client.PostAsync("/api/backbones", Form("resnet50", resnet18, "resnet18.pth"));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, wrongArchitecture.StatusCode);
        Assert.Contains(
            "'layer1.0.conv1.weight' has shape [64,64,3,3] but resnet50 needs [64,64,1,1]",
            (await wrongArchitecture.ProblemAsync()).GetProperty("detail").GetString()
        );

        var garbage = await client.PostAsync(
            "/api/backbones",
            Form("resnet18", "PK\u0003\u0004 this is not a checkpoint"u8.ToArray(), "weights.pt")
        );
        Assert.Equal(HttpStatusCode.UnprocessableEntity, garbage.StatusCode);
        Assert.Contains(
            "could not be read as a PyTorch state dict",
            (await garbage.ProblemAsync()).GetProperty("detail").GetString()
        );

        var noArchitecture = await client.PostAsync("/api/backbones", Form(null, resnet18, "resnet18.pth"));
        Assert.Equal(HttpStatusCode.BadRequest, noArchitecture.StatusCode);
        Assert.True((await noArchitecture.ProblemAsync()).GetProperty("errors").TryGetProperty("architecture", out _));

        var unknown = await client.PostAsync("/api/backbones", Form("resnet101", resnet18, "resnet18.pth"));
        Assert.Equal(HttpStatusCode.BadRequest, unknown.StatusCode);
        Assert.Contains(
            "resnet18, resnet34, resnet50, mobilenet_v2, vgg16, inception_v3",
            (await unknown.Content.ReadAsStringAsync())
        );

        var badPreprocessing = await client.PostAsync(
            "/api/backbones",
            Form("resnet18", resnet18, "resnet18.pth", ("preprocessing", "{\"std\":[0.2,0,0.2]}"))
        );
        Assert.Equal(HttpStatusCode.BadRequest, badPreprocessing.StatusCode);
        Assert.True(
            (await badPreprocessing.ProblemAsync()).GetProperty("errors").TryGetProperty("preprocessing.std", out _)
        );

        Assert.Equal(
            before,
            await factory.QueryAsync(async db =>
                (await db.BackboneWeights.CountAsync(), await db.Backbones.CountAsync())
            )
        );
    }

    [Fact]
    public async Task Weights_are_stored_once_and_an_unused_backbone_can_be_deleted()
    {
        var state = RandomWeights.StateDict(BackboneArchitecture.MobileNetV2, seed: 99);
        var first = await RegisterAsync(
            "mobilenet_v2",
            RandomWeights.PyTorchFile(state),
            "mobilenet.pth",
            ("id", "mobile-a")
        );
        // The same tensors as safetensors, under another id and preprocessing: a second backbone, the same stored
        // weights.
        var second = await RegisterAsync(
            "mobilenet_v2",
            RandomWeights.SafetensorsFile(state),
            "mobilenet.safetensors",
            ("id", "mobile-b"),
            ("preprocessing", "{\"inputSize\":160,\"mean\":[0.5,0.5,0.5],\"std\":[0.5,0.5,0.5]}")
        );
        Assert.Equal(first.WeightsSha256, second.WeightsSha256);
        Assert.Equal((160, 183), (second.InputSize, second.Preprocessing.ResizeTo));
        Assert.Contains("(Safetensors", second.Source);
        var sha = Convert.FromHexString(first.WeightsSha256!);
        Assert.Equal(1, await factory.QueryAsync(db => db.BackboneWeights.CountAsync(w => w.Sha256 == sha)));

        // Registering the same thing again is idempotent; the same id with other weights is a conflict.
        var again = await client.PostAsync(
            "/api/backbones",
            Form("mobilenet_v2", RandomWeights.PyTorchFile(state), "mobilenet.pth", ("id", "mobile-a"))
        );
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        var other = await client.PostAsync(
            "/api/backbones",
            Form(
                "mobilenet_v2",
                RandomWeights.PyTorchFile(RandomWeights.StateDict(BackboneArchitecture.MobileNetV2, seed: 100)),
                "other.pth",
                ("id", "mobile-a")
            )
        );
        Assert.Equal(HttpStatusCode.Conflict, other.StatusCode);
        await other.ProblemAsync();

        // A job may only unfreeze the stages the backbone has, and must name one that exists.
        var dataset = await (
            await client.PostAsync(
                "/api/datasets",
                Archives.DatasetForm("mobile data", Archives.Zip(Archives.TwoClasses(2)))
            )
        ).ReadAsync<DatasetResponse>();
        var unknown = await client.PostAsJsonAsync(
            "/api/training-jobs",
            new { datasetId = dataset.Id, backbone = "no-such-backbone" }
        );
        Assert.Equal(HttpStatusCode.BadRequest, unknown.StatusCode);
        Assert.Contains("No backbone is 'no-such-backbone'", await unknown.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync("/api/backbones/mobile-a")).StatusCode);
        Assert.Equal(1, await factory.QueryAsync(db => db.BackboneWeights.CountAsync(w => w.Sha256 == sha)));
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync("/api/backbones/mobile-b")).StatusCode);
        Assert.Equal(0, await factory.QueryAsync(db => db.BackboneWeights.CountAsync(w => w.Sha256 == sha)));
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/api/backbones/mobile-b")).StatusCode);
        Assert.Equal(
            HttpStatusCode.Conflict,
            (await client.DeleteAsync("/api/backbones/resnet18-imagenet")).StatusCode
        );
    }

    [Fact]
    public async Task A_job_on_inception_may_unfreeze_at_most_its_three_stages()
    {
        var backbone = await RegisterAsync(
            "inception_v3",
            RandomWeights.SafetensorsFile(RandomWeights.StateDict(BackboneArchitecture.InceptionV3, seed: 3)),
            "inception.safetensors"
        );
        var dataset = await (
            await client.PostAsync(
                "/api/datasets",
                Archives.DatasetForm("inception data", Archives.Zip(Archives.TwoClasses(2)))
            )
        ).ReadAsync<DatasetResponse>();
        var tooMany = await client.PostAsJsonAsync(
            "/api/training-jobs",
            new
            {
                datasetId = dataset.Id,
                backbone = backbone.Id,
                unfreezeStages = 4,
            }
        );
        Assert.Equal(HttpStatusCode.BadRequest, tooMany.StatusCode);
        Assert.Contains(
            "between 0 and 3",
            (await tooMany.ProblemAsync()).GetProperty("errors").GetProperty("unfreezeStages")[0].GetString()
        );
    }
}
