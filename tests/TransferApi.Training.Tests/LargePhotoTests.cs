using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TransferApi.TestSupport;
using TransferApi.Training.Imaging;
using static TorchSharp.torch;

namespace TransferApi.Training.Tests;

/// <summary>Phone-sized JPEGs decoded at a fraction of their size, upright, to the features a full decode
/// gives.</summary>
[Collection(BackboneCollection.Name)]
public class LargePhotoTests(BackboneFixture fixture)
{
    private static readonly ImageLimits Limits = new();

    private static byte[] ValPhoto(string label, int index) =>
        File.ReadAllBytes(TestData.AntsBeesImages("val", label, index + 1)[index]);

    [Fact]
    public void A_phone_photo_is_decoded_at_a_quarter_of_its_size_and_upright_but_small_photos_whole()
    {
        var photo = ValPhoto("ants", 0);
        var upright = PhonePhotos.Make(photo);
        using var whole = ImageReader.Decode(upright, Limits);
        using var reduced = ImageReader.Decode(upright, Limits, minShorterSide: 224);
        using var turned = ImageReader.Decode(PhonePhotos.Make(photo, storedSideways: true), Limits, 224);
        Assert.Equal((4032, 3024), (whole.Width, whole.Height));
        // 3024 / 4 = 756 keeps twice 224 (1/8 would not); the EXIF orientation still stands the sideways one up.
        Assert.Equal((1008, 756), (reduced.Width, reduced.Height));
        Assert.Equal((1008, 756), (turned.Width, turned.Height));
        Assert.True(MeanAbsoluteDifference(reduced, turned) < 2, "the sideways photo was not turned upright");
        // A quarter would leave fewer than 2 x 700 pixels on the shorter side: decoded at 1/2 (1512).
        using var half = ImageReader.Decode(upright, Limits, minShorterSide: 700);
        Assert.Equal(1512, half.Height);
        using var unreduced = ImageReader.Decode(upright, Limits, minShorterSide: 1000);
        Assert.Equal(3024, unreduced.Height);

        using var original = Image.Load<Rgb24>(photo);
        using var small = ImageReader.Decode(photo, Limits, minShorterSide: 224);
        Assert.Equal((original.Width, original.Height), (small.Width, small.Height));
    }

    [Fact]
    public void A_reduced_decode_gives_the_features_the_full_decode_of_the_same_pixels_gives()
    {
        var backbone = fixture.Backbone;
        var photos = new[] { ValPhoto("ants", 1), ValPhoto("ants", 2), ValPhoto("bees", 1), ValPhoto("bees", 2) };
        // The same enlarged pixels as a JPEG (decoded at 1/8) and as a PNG (never reduced: decoded whole).
        var jpegs = photos.Select(p => PhonePhotos.Make(p)).ToList();
        var pngs = photos.Select(p => PhonePhotos.Make(p, png: true)).ToList();
        using var reduced = backbone.ExtractFeatures(jpegs);
        using var whole = backbone.ExtractFeatures(pngs);
        using var cosine = nn.functional.cosine_similarity(reduced, whole, 1);
        var similarities = cosine.data<float>().ToArray();
        Assert.All(similarities, s => Assert.True(s > 0.999, $"cosine {s:F4}: {string.Join(", ", similarities)}"));
    }

    [Fact]
    public void A_phone_photo_gets_an_upright_working_copy_with_the_features_its_reduced_decode_gives()
    {
        var backbone = fixture.Backbone;
        var photos = new[] { ValPhoto("ants", 3), ValPhoto("bees", 3), ValPhoto("bees", 4) };
        var phone = photos.Select((p, i) => PhonePhotos.Make(p, storedSideways: i == 0)).ToList();
        var validated = phone.Select(p => ImageReader.Validate(p, Limits)).ToList();
        Assert.All(validated, v => Assert.Equal((4032, 3024), (v.Header.Width, v.Header.Height)));
        var copies = validated.Select(v => v.WorkingCopy!).ToList();
        foreach (var copy in copies)
        {
            // Upright already: no EXIF orientation left to apply, and a quarter of the photo's shorter side or less.
            using var decoded = Image.Load<Rgb24>(copy);
            Assert.Equal((683, WorkingCopy.ShorterSide), (decoded.Width, decoded.Height));
            Assert.True(copy.Length < 200_000, $"working copy of {copy.Length:N0} bytes");
        }
        Assert.True(WorkingCopy.Serves(backbone.Preprocessor.Spec));
        using var fromCopies = backbone.ExtractFeatures(copies);
        using var fromPhotos = backbone.ExtractFeatures(phone);
        using var cosine = nn.functional.cosine_similarity(fromCopies, fromPhotos, 1);
        var similarities = cosine.data<float>().ToArray();
        Assert.All(similarities, s => Assert.True(s > 0.999, $"cosine {s:F4}: {string.Join(", ", similarities)}"));

        // Photos already small decode as they are; a backbone resizing to more than half the copy's side reads
        // the photo.
        Assert.Null(ImageReader.Validate(ValPhoto("ants", 0), Limits).WorkingCopy);
        Assert.False(WorkingCopy.Serves(PreprocessingSpec.TorchVision(inputSize: 299, resizeTo: 342)));
    }

    private static double MeanAbsoluteDifference(Image<Rgb24> a, Image<Rgb24> b)
    {
        var (x, y) = (new Rgb24[a.Width * a.Height], new Rgb24[b.Width * b.Height]);
        a.CopyPixelDataTo(x);
        b.CopyPixelDataTo(y);
        return x.Zip(y)
            .Average(p =>
                (Math.Abs(p.First.R - p.Second.R) + Math.Abs(p.First.G - p.Second.G) + Math.Abs(p.First.B - p.Second.B))
                / 3.0
            );
    }
}
