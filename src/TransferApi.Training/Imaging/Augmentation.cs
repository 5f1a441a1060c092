using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace TransferApi.Training.Imaging;

/// <summary>How training images are varied; <see cref="Views"/> augmented views per image are embedded once per
/// job.</summary>
public sealed record AugmentationOptions(
    int Views = 0,
    bool RandomResizedCrop = true,
    bool HorizontalFlip = true,
    double ColorJitter = 0.2
)
{
    public static AugmentationOptions None { get; } = new();
}

/// <summary>
/// One drawn augmentation: a crop (fractions of the image), a mirror flip and colour factors. Drawn from a
/// seeded generator before any image is decoded, so views are reproducible whatever the thread scheduling.
/// </summary>
public sealed record ViewTransform(
    float CropX,
    float CropY,
    float CropWidth,
    float CropHeight,
    bool Flip,
    float Brightness,
    float Contrast,
    float Saturation
)
{
    public static ViewTransform Draw(Random random, AugmentationOptions options)
    {
        var (x, y, w, h) = (0f, 0f, 1f, 1f);
        if (options.RandomResizedCrop)
        {
            // torchvision's RandomResizedCrop, on fractions: area 50-100 %, aspect ratio 3/4 to 4/3.
            var area = 0.5 + 0.5 * random.NextDouble();
            var logRatio = Math.Log(3.0 / 4) + (Math.Log(4.0 / 3) - Math.Log(3.0 / 4)) * random.NextDouble();
            var ratio = Math.Exp(logRatio);
            w = (float)Math.Min(1, Math.Sqrt(area * ratio));
            h = (float)Math.Min(1, Math.Sqrt(area / ratio));
            x = (float)(random.NextDouble() * (1 - w));
            y = (float)(random.NextDouble() * (1 - h));
        }
        var flip = options.HorizontalFlip && random.NextDouble() < 0.5;
        float Jitter() => (float)(1 + options.ColorJitter * (2 * random.NextDouble() - 1));
        return new ViewTransform(x, y, w, h, flip, Jitter(), Jitter(), Jitter());
    }

    public void Apply(Image<Rgb24> image)
    {
        var crop = new Rectangle(
            (int)(CropX * image.Width),
            (int)(CropY * image.Height),
            Math.Max(1, (int)(CropWidth * image.Width)),
            Math.Max(1, (int)(CropHeight * image.Height))
        );
        crop.Intersect(new Rectangle(0, 0, image.Width, image.Height));
        image.Mutate(x =>
        {
            if (crop.Width < image.Width || crop.Height < image.Height)
                x.Crop(crop);
            if (Flip)
                x.Flip(FlipMode.Horizontal);
            if (Brightness != 1)
                x.Brightness(Brightness);
            if (Contrast != 1)
                x.Contrast(Contrast);
            if (Saturation != 1)
                x.Saturate(Saturation);
        });
    }
}
