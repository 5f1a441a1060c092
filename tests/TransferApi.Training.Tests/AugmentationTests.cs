using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using TransferApi.TestSupport;
using TransferApi.Training.Imaging;

namespace TransferApi.Training.Tests;

[Collection(BackboneCollection.Name)]
public class AugmentationTests(BackboneFixture fixture)
{
    private static byte[] Photo(int index) =>
        File.ReadAllBytes(TestData.AntsBeesImages("train", "bees", index + 1)[index]);

    [Fact]
    public void A_flip_view_is_the_mirror_image_of_the_plain_one()
    {
        var flip = new ViewTransform(0, 0, 1, 1, Flip: true, 1, 1, 1);
        // A square source, so the centre crop takes all of it and mirroring commutes with the resize.
        using var square = Image.Load<Rgb24>(Photo(0));
        var side = Math.Min(square.Width, square.Height);
        square.Mutate(x => x.Crop(side, side));
        using var buffer = new MemoryStream();
        square.SaveAsPng(buffer);
        byte[] png = buffer.ToArray();
        var rgb = new ImagePreprocessor(
            PreprocessingSpec.CntkResNet with
            {
                ChannelOrder = "RGB",
            },
            new ImageLimits(),
            new float[3 * 224 * 224]
        );
        using var plain = rgb.ToTensor([png]);
        using var mirrored = rgb.ToTensor([png], [flip]);
        using var flippedBack = mirrored.flip(3);
        Assert.True(plain.sub(flippedBack).abs().max().item<float>() < 1e-3);
        Assert.True(plain.sub(mirrored).abs().max().item<float>() > 10);
    }

    [Fact]
    public void Drawn_transforms_stay_in_their_ranges_and_repeat_with_the_seed()
    {
        var options = new AugmentationOptions(Views: 1, ColorJitter: 0.3);
        List<ViewTransform> Draw(int seed)
        {
            var random = new Random(seed);
            return Enumerable.Range(0, 200).Select(_ => ViewTransform.Draw(random, options)).ToList();
        }
        var first = Draw(5);
        var again = Draw(5);
        Assert.Equal(first, again);
        Assert.All(first, t =>
        {
            Assert.InRange(t.CropWidth * t.CropHeight, 0.5 - 1e-6, 1 + 1e-6);
            Assert.InRange(t.CropX + t.CropWidth, 0, 1 + 1e-6);
            Assert.InRange(t.CropY + t.CropHeight, 0, 1 + 1e-6);
            Assert.InRange(t.Brightness, 0.7f, 1.3f);
        });
        Assert.InRange(first.Count(t => t.Flip), 70, 130);
    }

    [Fact]
    public void Augmented_views_add_training_rows_embedded_once_per_job()
    {
        var images = LabeledPhotos
            .AntsAndBees(4, DataSplit.Train)
            .Concat(LabeledPhotos.AntsAndBees(2, DataSplit.Validation, folder: "val"))
            .ToList();
        var options = new TrainingOptions
        {
            Epochs = 2,
            BatchSize = 4,
            Augmentation = new AugmentationOptions(Views: 2),
        };
        var trainer = new TransferLearningTrainer(fixture.Backbone);
        var result = trainer.Train(images, options, new RecordingObserver(), CancellationToken.None);
        var again = trainer.Train(images, options, new RecordingObserver(), CancellationToken.None);

        Assert.Equal(12 + 2 * 8, result.Timings.ImagesEmbedded);
        Assert.Equal((8, 4), (result.TrainImages, result.ValidationImages));
        Assert.Equal(result.Metrics.Select(m => m.TrainLoss), again.Metrics.Select(m => m.TrainLoss));
    }
}
