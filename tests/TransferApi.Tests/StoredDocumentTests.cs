using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using TransferApi.Features.TrainingJobs;
using TransferApi.Persistence;
using TransferApi.Training;
using TransferApi.Training.Evaluation;

namespace TransferApi.Tests;

/// <summary>
/// The jsonb columns keep their own shapes: rows written by earlier builds read as they were meant, and new rows
/// are written in the version-1 document shape whatever the training core's records are called today.
/// </summary>
[Collection(ServiceCollection.Name)]
public class StoredDocumentTests(TransferApiFactory factory)
{
    // As the build before stored documents wrote them: PascalCase, no Version, no Augmentation (older still).
    private const string OldOptions = """
        {"Epochs":3,"BatchSize":16,"LearningRate":0.01,"ValidationFraction":0.25,"Seed":7,
         "Head":{"Kind":"Mlp","HiddenUnits":64,"Dropout":0.1},"Optimizer":"AdamW","WeightDecay":0.01,"Momentum":0.9,
         "Schedule":"Cosine","StepEpochs":null,"StepGamma":0.1,"LabelSmoothing":0.1,"ClassWeighted":true,
         "EarlyStopping":{"Monitor":"ValAccuracy","Patience":2,"MinDelta":0.001},"UnfreezeStages":1,
         "FineTuneEpochs":4,"FineTuneLrFactor":20,"FeatureBatchSize":32}
        """;

    private const string OldProgress = """
        {"Stage":"Done","Epoch":3,"TotalEpochs":3,"Batch":0,"TotalBatches":0,"Percent":100,"ImagesPerSecond":12.5,
         "EtaSeconds":null}
        """;

    private const string OldReport = """
        {"Split":"validation","Images":4,"Accuracy":0.75,"Top5Accuracy":1,"MacroF1":0.733,"LogLoss":0.41,
         "PerClass":[{"Label":"a","Precision":1,"Recall":0.5,"F1":0.667,"Support":2},
                     {"Label":"b","Precision":0.667,"Recall":1,"F1":0.8,"Support":2}],
         "ConfusionMatrix":{"Labels":["a","b"],"Counts":[[1,1],[0,2]]}}
        """;

    [Fact]
    public async Task A_job_row_written_by_an_earlier_build_reads_with_every_option_and_its_report()
    {
        var jobId = await InsertOldJobAsync();
        var job = await factory.QueryAsync(db => db.TrainingJobs.AsNoTracking().SingleAsync(j => j.Id == jobId));

        var expected = new TrainingOptions
        {
            Epochs = 3,
            BatchSize = 16,
            LearningRate = 0.01,
            ValidationFraction = 0.25,
            Seed = 7,
            Head = new HeadSpec(HeadKind.Mlp, 64, 0.1),
            Optimizer = OptimizerKind.AdamW,
            WeightDecay = 0.01,
            Schedule = LrSchedule.Cosine,
            LabelSmoothing = 0.1,
            ClassWeighted = true,
            EarlyStopping = new EarlyStopping(MonitoredMetric.ValAccuracy, 2, 0.001),
            UnfreezeStages = 1,
            FineTuneEpochs = 4,
            FineTuneLrFactor = 20,
        };
        Assert.Equal(expected, job.Options);
        Assert.Equal(new TrainingProgress(TrainingStage.Done, 3, 3, 0, 0, 100, 12.5, null), job.Progress);
        Assert.Equal(0.75, job.Report!.Accuracy);
        Assert.Equal(
            [
                [1, 1],
                [0, 2],
            ],
            job.Report.ConfusionMatrix.Counts.Select(r => r.ToArray())
        );
        Assert.Equal(["a", "b"], job.Report.PerClass.Select(c => c.Label));

        // And clients see it through the API's own shapes.
        var response = await factory
            .CreateClient()
            .GetFromJsonAsync<TrainingJobResponse>($"/api/training-jobs/{jobId}", Json.Options);
        Assert.Equal(HeadKind.Mlp, response!.Options.Head.Kind);
        Assert.Equal(MonitoredMetric.ValAccuracy, response.Options.EarlyStopping!.Monitor);
        Assert.Equal(0, response.Options.Augmentation.Views);
        var report = await factory
            .CreateClient()
            .GetFromJsonAsync<ClassificationReportResponse>($"/api/training-jobs/{jobId}/report", Json.Options);
        Assert.Equal(0.8, report!.PerClass[1].F1);
    }

    [Fact]
    public async Task New_rows_are_written_in_the_version_1_document_shape()
    {
        var jobId = await InsertOldJobAsync();
        await factory.QueryAsync(async db =>
        {
            var job = await db.TrainingJobs.SingleAsync(j => j.Id == jobId);
            job.Options = job.Options with { Epochs = 5 };
            job.Progress = TrainingProgress.Queued(5);
            return await db.SaveChangesAsync();
        });
        var (options, progress) = await factory.QueryAsync(async db =>
        {
            var row = await db
                .Database.SqlQuery<StoredJson>(
                    $"""
                    SELECT "Options"::text AS "Options", "Progress"::text AS "Progress" FROM training_jobs WHERE
                    "Id" = {jobId}
                    """
                )
                .SingleAsync();
            return (JsonNode.Parse(row.Options)!, JsonNode.Parse(row.Progress)!);
        });

        Assert.Equal(1, options["Version"]!.GetValue<int>());
        Assert.Equal(5, options["Epochs"]!.GetValue<int>());
        Assert.Equal("Mlp", options["Head"]!["Kind"]!.GetValue<string>());
        Assert.Equal("ValAccuracy", options["EarlyStopping"]!["Monitor"]!.GetValue<string>());
        Assert.Equal(0, options["Augmentation"]!["Views"]!.GetValue<int>());
        Assert.Equal("Queued", progress["Stage"]!.GetValue<string>());
        Assert.Equal(1, progress["Version"]!.GetValue<int>());
    }

    [Fact]
    public async Task A_row_from_a_newer_build_is_refused_rather_than_misread()
    {
        // A tenant of its own, deleted at the end: no other test's listing may meet this row.
        var jobId = await InsertOldJobAsync(options: """{"Version":2,"Epochs":3}""", tenant: "stored-documents-v2");
        try
        {
            var error = await Assert.ThrowsAsync<InvalidOperationException>(() =>
                factory.QueryAsync(db => db.TrainingJobs.AsNoTracking().SingleAsync(j => j.Id == jobId))
            );
            Assert.Contains("version 2", error.Message);
        }
        finally
        {
            await factory.QueryAsync(db => db.TrainingJobs.Where(j => j.Id == jobId).ExecuteDeleteAsync());
        }
    }

    private sealed record StoredJson(string Options, string Progress);

    private async Task<Guid> InsertOldJobAsync(string options = OldOptions, string tenant = "default")
    {
        var datasetId = Guid.NewGuid();
        var jobId = Guid.NewGuid();
        await factory.QueryAsync(async db =>
        {
            db.Datasets.Add(
                new Dataset
                {
                    Id = datasetId,
                    Tenant = tenant,
                    Name = "stored",
                    CreatedAt = DateTime.UtcNow,
                }
            );
            await db.SaveChangesAsync();
            return await db.Database.ExecuteSqlInterpolatedAsync(
                $"""
                INSERT INTO training_jobs ("Id", "Tenant", "DatasetId", "Status", "CreatedAt", "Backbone", "Options",
                    "Progress", "Report", "CancelRequested")
                VALUES ({jobId}, {tenant}, {datasetId}, 'Succeeded', {DateTime.UtcNow}, 'resnet18-imagenet',
                    {options}::jsonb, {OldProgress}::jsonb, {OldReport}::jsonb, false)
                """
            );
        });
        return jobId;
    }
}
