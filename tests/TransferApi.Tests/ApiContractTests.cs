using System.Net;
using System.Net.Http.Json;
using System.Text;

namespace TransferApi.Tests;

[Collection(ServiceCollection.Name)]
public class ApiContractTests(TransferApiFactory factory)
{
    private readonly HttpClient client = factory.CreateClient();

    [Fact]
    public async Task Training_job_for_an_unknown_data_set_names_the_field()
    {
        var before = await factory.QueryAsync(db => Task.FromResult(db.TrainingJobs.Count()));
        var response = await client.PostAsJsonAsync(
            "/api/training-jobs",
            new
            {
                datasetId = Guid.NewGuid(),
                epochs = 0,
                learningRate = -1,
                head = "Mlp",
                hiddenUnits = 0,
                labelSmoothing = 1.5,
                earlyStopping = new { patience = 0 },
            }
        );
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var errors = (await response.ProblemAsync()).GetProperty("errors");
        Assert.Equal(
            ["datasetId", "earlyStopping.patience", "epochs", "hiddenUnits", "labelSmoothing", "learningRate"],
            errors.EnumerateObject().Select(e => e.Name).Order()
        );
        Assert.Equal(before, await factory.QueryAsync(db => Task.FromResult(db.TrainingJobs.Count())));
    }

    [Fact]
    public async Task An_unknown_option_value_names_its_path()
    {
        var response = await client.PostAsJsonAsync(
            "/api/training-jobs",
            new { datasetId = Guid.NewGuid(), optimizer = "rmsprop" }
        );
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("$.optimizer", (await response.ProblemAsync()).GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Malformed_json_is_a_400_problem()
    {
        var response = await client.PostAsync(
            "/api/training-jobs",
            new StringContent("{not json", Encoding.UTF8, "application/json")
        );
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("JSON", (await response.ProblemAsync()).GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Unknown_ids_are_404_problems()
    {
        foreach (var path in new[] { "/api/datasets/", "/api/training-jobs/", "/api/models/" })
        {
            var response = await client.GetAsync(path + Guid.NewGuid());
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            await response.ProblemAsync();
        }
        var predict = await client.PostAsync($"/api/models/{Guid.NewGuid()}/predict", Archives.ImageForm([1, 2, 3]));
        Assert.Equal(HttpStatusCode.NotFound, predict.StatusCode);
    }

    [Fact]
    public async Task The_backbone_list_describes_the_built_in_resnet18()
    {
        var backbones = await (await client.GetAsync("/api/backbones")).ReadAsync<
            List<Features.Backbones.BackboneResponse>
        >();
        // Other tests register their own; the built-in one comes first.
        var resnet = backbones[0];
        Assert.Equal(
            ("resnet18-imagenet", true, 224, 512, 4),
            (resnet.Id, resnet.Default, resnet.InputSize, resnet.FeatureSize, resnet.Stages)
        );
        Assert.Equal("BGR", resnet.Preprocessing.ChannelOrder);
        Assert.InRange(resnet.ParameterCount, 15_000_000, 17_000_000); // ResNet18 with a third block in its last stage
        Assert.Contains("Microsoft.ML.DnnImageFeaturizer.ResNet18", resnet.Source);
        Assert.Equal("resnet18-cntk", resnet.Architecture);
        Assert.Null(resnet.WeightsSha256);
    }

    [Fact]
    public async Task Health_and_swagger_are_served()
    {
        Assert.Equal("Healthy", await client.GetStringAsync("/health/ready"));
        Assert.Equal("Healthy", await client.GetStringAsync("/health/live"));
        var openApi = await client.GetStringAsync("/swagger/v1/swagger.json");
        foreach (
            var route in new[]
            {
                "/api/datasets",
                "/api/datasets/{id}/images",
                "/api/training-jobs/{id}",
                "/api/training-jobs/{id}/cancel",
                "/api/training-jobs/{id}/events",
                "/api/training-jobs/{id}/report",
                "/api/training-jobs/{id}/charts/learning-curves.png",
                "/api/models/{id}/predict",
                "/api/models/{id}/aliases/{alias}",
                "/api/models/{id}/export",
                "/api/backbones",
            }
        )
            Assert.Contains(route, openApi);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/swagger/index.html")).StatusCode);
    }
}
