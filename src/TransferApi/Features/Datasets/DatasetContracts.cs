using TransferApi.Http;
using TransferApi.Training;

namespace TransferApi.Features.Datasets;

/// <summary>New shares and seed for the images whose split the archive's folders (or the client) did not fix.</summary>
/// <param name="ValidationFraction">Share of each class for validation, [0, 0.9] (default: the data set's).</param>
/// <param name="TestFraction">Share of each class for the final test (default: the data set's).</param>
/// <param name="Seed">Seed of the split (default: the data set's).</param>
/// <param name="KeepNearDuplicatesTogether">Put each near-duplicate group of the latest health report in one split, so
/// no copy of a training image is validated or tested on (default true).</param>
public sealed record ResplitRequest(
    double? ValidationFraction,
    double? TestFraction,
    long? Seed,
    bool? KeepNearDuplicatesTogether = null
);

/// <param name="Name">The class (its folder's name).</param>
/// <param name="ImageCount">Its images in all splits.</param>
/// <param name="Train">Its training images (including those not yet assigned a split).</param>
/// <param name="Validation">Its validation images.</param>
/// <param name="Test">Its test images.</param>
public sealed record ClassCount(string Name, int ImageCount, int Train, int Validation, int Test);

/// <param name="Train">Training images.</param>
/// <param name="Validation">Validation images.</param>
/// <param name="Test">Test images.</param>
/// <param name="Unlabeled">Images stored without a label (never trained on).</param>
public sealed record SplitCounts(int Train, int Validation, int Test, int Unlabeled);

/// <param name="MinWidth">Narrowest image, in pixels.</param>
/// <param name="MaxWidth">Widest image, in pixels.</param>
/// <param name="MeanWidth">Mean width, in pixels.</param>
/// <param name="MinHeight">Lowest image, in pixels.</param>
/// <param name="MaxHeight">Tallest image, in pixels.</param>
/// <param name="MeanHeight">Mean height, in pixels.</param>
/// <param name="TotalBytes">Bytes of all images as uploaded.</param>
/// <param name="MeanBytes">Mean bytes of an image.</param>
public sealed record ImageStatistics(
    int MinWidth,
    int MaxWidth,
    double MeanWidth,
    int MinHeight,
    int MaxHeight,
    double MeanHeight,
    long TotalBytes,
    double MeanBytes
);

/// <param name="ValidationFraction">Share of each class split off for validation.</param>
/// <param name="TestFraction">Share of each class split off for the final test.</param>
/// <param name="Seed">Seed of the split.</param>
public sealed record SplitSettings(double ValidationFraction, double TestFraction, long Seed);

/// <param name="Id">The data set's id.</param>
/// <param name="Name">Its display name.</param>
/// <param name="CreatedAt">When it was uploaded (UTC).</param>
/// <param name="ImageCount">Images stored.</param>
/// <param name="Classes">Each class with its images per split, by name.</param>
/// <param name="Splits">Images per split.</param>
/// <param name="ImbalanceRatio">Images in the largest class divided by images in the smallest.</param>
/// <param name="ImageStats">Sizes of the stored images (null while there are none).</param>
/// <param name="Split">How images without a fixed split are split.</param>
/// <param name="Trainable">Whether a training job can start; problems says why not.</param>
/// <param name="Problems">Why it cannot be trained yet (empty when it can).</param>
/// <param name="Rejected">Files of the upload that were not stored, and why.</param>
/// <param name="Health">Counts of the latest health report (GET …/health has the details).</param>
public sealed record DatasetResponse(
    Guid Id,
    string Name,
    DateTime CreatedAt,
    int ImageCount,
    IReadOnlyList<ClassCount> Classes,
    SplitCounts Splits,
    double? ImbalanceRatio,
    ImageStatistics? ImageStats,
    SplitSettings Split,
    bool Trainable,
    IReadOnlyList<string> Problems,
    IReadOnlyList<RejectedFile> Rejected,
    DatasetHealthSummary Health
);

/// <param name="Id">The image's id.</param>
/// <param name="Label">Its class (null: stored unlabeled).</param>
/// <param name="Split">Train, Validation, Test, Unassigned or Unlabeled.</param>
/// <param name="SplitFixed">Whether its split came from folders or a client and survives a re-split.</param>
/// <param name="FileName">Its path in the archive, or its uploaded file name.</param>
/// <param name="Format">Its format (JPEG, PNG, BMP, GIF, WebP).</param>
/// <param name="Width">Width in pixels.</param>
/// <param name="Height">Height in pixels.</param>
/// <param name="SizeBytes">Bytes as uploaded.</param>
/// <param name="Sha256">SHA-256 of its bytes, lower-case hex.</param>
public sealed record DatasetImageResponse(
    Guid Id,
    string? Label,
    DataSplit Split,
    bool SplitFixed,
    string FileName,
    string Format,
    int Width,
    int Height,
    int SizeBytes,
    string Sha256
);

/// <param name="DatasetId">The data set the images went to.</param>
/// <param name="Added">The images stored.</param>
/// <param name="Rejected">The files not stored, and why.</param>
public sealed record AddImagesResponse(
    Guid DatasetId,
    IReadOnlyList<DatasetImageResponse> Added,
    IReadOnlyList<RejectedFile> Rejected
);

/// <summary>A new label and/or split for one image; a split set here is kept when the data set is split
/// again.</summary>
/// <param name="Label">The new class. An unlabeled image given one joins the split the data set's shares and seed give
/// it.</param>
/// <param name="Split">Train, Validation or Test to fix the split; Unassigned to let re-splits choose.</param>
public sealed record UpdateImageRequest(string? Label, DataSplit? Split);
