using Hangfire;
using Microsoft.EntityFrameworkCore;
using TransferApi.Features.Models;
using TransferApi.Infrastructure;
using TransferApi.Persistence;
using TransferApi.Training.Training;

namespace TransferApi.Jobs;

/// <summary>
/// Hangfire glue for one training job: reads the job and its images, runs the training core on a dedicated
/// thread, stores the model. Delivery is at least once, so a job that already ended is left alone and a
/// re-run starts clean (metrics are keyed by job and epoch).
/// </summary>
public sealed class TrainingJobRunner(
    IDbContextFactory<TransferDbContext> dbFactory, BackboneRegistry backbones, ILogger<TrainingJobRunner> logger)
{
    public const string Queue = "training";

    [Queue(Queue)]
    [AutomaticRetry(Attempts = 2)]
    public async Task RunAsync(Guid jobId, CancellationToken cancellation)
    {
        using var logScope = logger.BeginScope("Job {JobId}", jobId);
        await using var db = await dbFactory.CreateDbContextAsync(cancellation);
        var job = await db.TrainingJobs.FirstOrDefaultAsync(j => j.Id == jobId, cancellation);
        if (job is null || job.Status is JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled)
        {
            logger.LogInformation("Training job {JobId} is {Status}; nothing to do", jobId, job?.Status.ToString() ?? "gone");
            return;
        }
        using var datasetScope = logger.BeginScope("Dataset {DatasetId}", job.DatasetId);

        await db.TrainingMetrics.Where(m => m.JobId == jobId).ExecuteDeleteAsync(cancellation);
        job.Status = JobStatus.Running;
        job.StartedAt = DateTime.UtcNow;
        job.Error = null;
        job.Progress = new JobProgress { Stage = TrainingStage.Queued, TotalEpochs = job.Options.Epochs };
        await db.SaveChangesAsync(cancellation);

        try
        {
            var images = await db.DatasetImages.AsNoTracking().Where(i => i.DatasetId == job.DatasetId)
                .OrderBy(i => i.Id)
                .Select(i => new LabeledImage(i.Label, i.Split, i.Data))
                .ToListAsync(cancellation);
            var options = job.Options;
            logger.LogInformation("Training job {JobId} started on {Images} images with {Backbone}", jobId, images.Count, job.Backbone);

            TrainingResult result;
            await using (var progress = new JobProgressWriter(dbFactory, jobId))
            {
                var backbone = backbones.Get(job.Backbone);
                // Training is CPU-bound and synchronous (TorchSharp dispose scopes are per thread): give it its own thread.
                result = await Task.Factory.StartNew(
                    () => new TransferLearningTrainer(backbone).Train(images, options, progress, cancellation),
                    cancellation, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            }

            var best = result.BestMetrics;
            var model = new TrainedModel
            {
                Id = Guid.CreateVersion7(),
                JobId = job.Id,
                DatasetId = job.DatasetId,
                Backbone = result.Checkpoint.BackboneId,
                Labels = result.Checkpoint.Labels.ToList(),
                Preprocessing = ModelMapping.ToEntity(result.Checkpoint.Preprocessing),
                FeatureSize = result.Checkpoint.FeatureSize,
                Head = result.Checkpoint.Head,
                HeadWeights = result.Checkpoint.HeadWeights,
                CreatedAt = DateTime.UtcNow,
                ValAccuracy = best.ValAccuracy,
                ValLoss = best.ValLoss,
                TrainLoss = best.TrainLoss,
                BestEpoch = result.BestEpoch,
                StoppedEarly = result.StoppedEarly,
                TrainImages = result.TrainImages,
                ValidationImages = result.ValidationImages,
                FeatureExtractionSeconds = result.Timings.FeatureExtraction.TotalSeconds,
                HeadTrainingSeconds = result.Timings.HeadTraining.TotalSeconds,
            };
            db.Models.Add(model);
            await db.Entry(job).ReloadAsync(cancellation);
            job.Status = JobStatus.Succeeded;
            job.FinishedAt = DateTime.UtcNow;
            job.ModelId = model.Id;
            await db.SaveChangesAsync(cancellation);
            logger.LogInformation(
                "Training job {JobId} succeeded: val accuracy {ValAccuracy:P1}; features {FeatureSeconds:N1} s ({ImagesPerSecond:N1} img/s), head {HeadSeconds:N2} s",
                jobId, best.ValAccuracy, result.Timings.FeatureExtraction.TotalSeconds, result.Timings.ImagesPerSecond, result.Timings.HeadTraining.TotalSeconds);
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            // The server is shutting down: Hangfire hands the job to the next worker, which starts it again.
            logger.LogWarning("Training job {JobId} interrupted by shutdown; it will run again", jobId);
            throw;
        }
        catch (Exception e) when (e is not DbUpdateException and not Npgsql.NpgsqlException)
        {
            // Bad input or a bug: retrying would fail the same way. Database outages propagate and are retried.
            logger.LogError(e, "Training job {JobId} failed", jobId);
            db.ChangeTracker.Clear();
            await db.TrainingJobs.Where(j => j.Id == jobId).ExecuteUpdateAsync(s => s
                .SetProperty(j => j.Status, JobStatus.Failed)
                .SetProperty(j => j.FinishedAt, DateTime.UtcNow)
                .SetProperty(j => j.Error, e is TrainingInputException ? e.Message : $"{e.GetType().Name}: {e.Message}"), CancellationToken.None);
        }
    }
}
