using System.Diagnostics;

namespace TransferApi.Training;

/// <summary>
/// The one place a run's progress bar is computed. Feature extraction takes the first 90 % (it costs far more than
/// the epochs); the epochs take all but the last 1 % of the rest, the head's all of it without fine-tuning and a fifth
/// of it with; the final evaluation takes the last 1 %.
/// </summary>
internal sealed class ProgressMeter(ITrainingObserver observer, TrainingOptions options)
{
    private const double ExtractionShare = 0.9;
    private const double EpochsShare = 0.99;

    private bool FineTunes => options.UnfreezeStages > 0;
    private double HeadShare => FineTunes ? EpochsShare * 0.2 : EpochsShare;
    private int TotalEpochs => options.Epochs + (FineTunes ? options.FineTuneEpochs : 0);

    public void ExtractionStarted(int batches) =>
        observer.OnProgress(
            new TrainingProgress(TrainingStage.ExtractingFeatures, 0, options.Epochs, 0, batches, 0, null, null)
        );

    public void ExtractionBatch(int batch, int batches, int imagesDone, int images, TimeSpan elapsed)
    {
        var rate = imagesDone / elapsed.TotalSeconds;
        observer.OnProgress(
            new TrainingProgress(
                TrainingStage.ExtractingFeatures,
                0,
                options.Epochs,
                batch,
                batches,
                100 * ExtractionShare * imagesDone / images,
                rate,
                (images - imagesDone) / rate
            )
        );
    }

    /// <summary>The recipe search: candidates done of those planned, at the extraction's end of the bar, with an
    /// ETA from the pace so far.</summary>
    public void TuningCandidate(int done, int planned, TimeSpan elapsed)
    {
        var pace = elapsed.TotalSeconds / done;
        observer.OnProgress(
            new TrainingProgress(
                TrainingStage.Tuning,
                0,
                options.Epochs,
                done,
                planned,
                100 * ExtractionShare,
                null,
                pace * Math.Max(0, planned - done)
            )
        );
    }

    /// <summary>The head's epoch loop reporting onto its share of the bar.</summary>
    public Action<int, int, int> HeadEpochs(Stopwatch clock) =>
        EpochBatches(TrainingStage.TrainingHead, 0, options.Epochs, ExtractionShare, HeadShare, clock);

    /// <summary>Fine-tuning's epoch loop, numbered after the head's <paramref name="headEpochs"/>.</summary>
    public Action<int, int, int> FineTuningEpochs(int headEpochs, Stopwatch clock) =>
        EpochBatches(
            TrainingStage.FineTuning,
            headEpochs,
            options.FineTuneEpochs,
            ExtractionShare + (1 - ExtractionShare) * HeadShare,
            EpochsShare - HeadShare,
            clock
        );

    public void Evaluating(int epochsDone) =>
        observer.OnProgress(
            new TrainingProgress(
                TrainingStage.Evaluating,
                epochsDone,
                TotalEpochs,
                0,
                0,
                100 * (ExtractionShare + (1 - ExtractionShare) * EpochsShare),
                null,
                null
            )
        );

    public void Done(int epochsDone) =>
        observer.OnProgress(new TrainingProgress(TrainingStage.Done, epochsDone, TotalEpochs, 0, 0, 100, null, 0));

    /// <summary>
    /// (epoch, batch, batches) of a loop over <paramref name="epochs"/> epochs mapped onto
    /// [<paramref name="from"/>, <paramref name="from"/> + <paramref name="span"/> of the post-extraction rest].
    /// </summary>
    private Action<int, int, int> EpochBatches(
        TrainingStage stage,
        int epochOffset,
        int epochs,
        double from,
        double span,
        Stopwatch clock
    )
    {
        var started = clock.Elapsed.TotalSeconds;
        return (epoch, batch, batches) =>
        {
            var done = ((epoch - epochOffset - 1) * batches + batch) / (double)(epochs * batches);
            var elapsed = clock.Elapsed.TotalSeconds - started;
            observer.OnProgress(
                new TrainingProgress(
                    stage,
                    epoch,
                    epochOffset + epochs,
                    batch,
                    batches,
                    100 * (from + (1 - ExtractionShare) * span * done),
                    null,
                    done > 0 ? elapsed / done * (1 - done) : null
                )
            );
        };
    }
}
