using TransferApi.Persistence;
using TransferApi.Training;

namespace TransferApi.Features.Datasets;

/// <summary>What a data set's health report found, in counts.</summary>
/// <param name="Status">Pending (queued), Running, Ready or Failed: the latest computation.</param>
/// <param name="Stale">Whether the data set changed since the report (a newer one is then on its way).</param>
/// <param name="ComputedAt">When the report was computed (null before the first).</param>
/// <param name="NearDuplicateGroups">Groups of near-identical images.</param>
/// <param name="LeakingGroups">Of those, groups spanning splits.</param>
/// <param name="LabelIssues">Images whose label looks wrong.</param>
/// <param name="Outliers">Images unlike the rest.</param>
/// <param name="Warnings">Warnings (class sizes, imbalance, tiny images, duplicated classes).</param>
public sealed record DatasetHealthSummary(
    HealthStatus Status,
    bool Stale,
    DateTime? ComputedAt,
    int? NearDuplicateGroups,
    int? LeakingGroups,
    int? LabelIssues,
    int? Outliers,
    int? Warnings
);

/// <param name="ImageId">The image.</param>
/// <param name="Label">Its label when the report was computed (null: unlabeled).</param>
/// <param name="Split">Its split then.</param>
public sealed record HealthImageResponse(Guid ImageId, string? Label, DataSplit Split);

/// <param name="Images">The images, in upload order.</param>
/// <param name="Similarity">Lowest cosine similarity of the features of a pair that joined the group.</param>
public sealed record NearDuplicateGroupResponse(IReadOnlyList<HealthImageResponse> Images, double Similarity);

/// <param name="ImageId">The image.</param>
/// <param name="Label">Its given label.</param>
/// <param name="SuggestedLabel">The label models that never saw it give it.</param>
/// <param name="Confidence">Their probability of the suggested label.</param>
public sealed record LabelIssueResponse(Guid ImageId, string Label, string SuggestedLabel, double Confidence);

/// <param name="ImageId">The image.</param>
/// <param name="Label">Its label (null: unlabeled).</param>
/// <param name="Split">Its split.</param>
/// <param name="Score">1 minus the cosine similarity to its 5th nearest image; higher is more unusual.</param>
public sealed record OutlierResponse(Guid ImageId, string? Label, DataSplit Split, double Score);

/// <param name="Label">The class.</param>
/// <param name="Images">Its images.</param>
/// <param name="Share">Its share of the labelled images.</param>
public sealed record ClassBalanceResponse(string Label, int Images, double Share);

/// <summary>A data set's health: near-duplicates, leakage between splits, label issues, outliers, class
/// balance.</summary>
/// <param name="DatasetId">The data set.</param>
/// <param name="Status">Pending (queued), Running, Ready or Failed: the latest computation.</param>
/// <param name="Progress">Share of the running computation done, 0 to 1.</param>
/// <param name="Error">Why the latest computation failed.</param>
/// <param name="Stale">Whether the data set changed since the report below (or another backbone was asked for).</param>
/// <param name="DatasetVersion">The data set's version now (every change adds one).</param>
/// <param name="ReportVersion">The version the report describes (null before the first report).</param>
/// <param name="ComputedAt">When the report was computed.</param>
/// <param name="Backbone">The backbone whose features the report used.</param>
/// <param name="Seconds">How long it took, features included.</param>
/// <param name="Images">Images analysed.</param>
/// <param name="UnlabeledImages">Of those, unlabeled.</param>
/// <param name="FeaturesComputed">Images that went through the backbone (the rest came from the feature
/// cache).</param>
/// <param name="DuplicateThreshold">Cosine similarity at which two images count as near-duplicates.</param>
/// <param name="NearDuplicates">Groups of near-identical images (resized, re-encoded, slightly cropped copies).</param>
/// <param name="Leakage">Groups spanning splits: a copy of a training image is validated or tested on.</param>
/// <param name="LabelIssues">Images whose label looks wrong, most suspicious first.</param>
/// <param name="Outliers">Images unlike every other, most unusual first.</param>
/// <param name="ClassBalance">Images per class, largest first.</param>
/// <param name="Warnings">Problems in plain words, with the numbers.</param>
public sealed record DatasetHealthResponse(
    Guid DatasetId,
    HealthStatus Status,
    double Progress,
    string? Error,
    bool Stale,
    long DatasetVersion,
    long? ReportVersion,
    DateTime? ComputedAt,
    string Backbone,
    double? Seconds,
    int? Images,
    int? UnlabeledImages,
    int? FeaturesComputed,
    double? DuplicateThreshold,
    IReadOnlyList<NearDuplicateGroupResponse> NearDuplicates,
    IReadOnlyList<NearDuplicateGroupResponse> Leakage,
    IReadOnlyList<LabelIssueResponse> LabelIssues,
    IReadOnlyList<OutlierResponse> Outliers,
    IReadOnlyList<ClassBalanceResponse> ClassBalance,
    IReadOnlyList<string> Warnings
);

/// <param name="ImageId">The unlabeled image.</param>
/// <param name="Predicted">The model's most probable label for it.</param>
/// <param name="Probability">That label's probability.</param>
/// <param name="Score">How much labelling it would teach: uncertainty (1 minus the margin between the two most
/// probable labels) times diversity (1 minus its highest similarity to an image above it). Never rises down the
/// list.</param>
public sealed record SuggestionItem(Guid ImageId, string Predicted, double Probability, double Score);

/// <param name="ModelId">The model whose uncertainty ranked them (null: a quick head on the labelled images' cached
/// features).</param>
/// <param name="Backbone">The backbone whose features were used.</param>
/// <param name="UnlabeledImages">Unlabeled images considered.</param>
/// <param name="Items">The images to label next, most useful first; no two are near-duplicates.</param>
public sealed record SuggestionsResponse(
    Guid? ModelId,
    string Backbone,
    int UnlabeledImages,
    IReadOnlyList<SuggestionItem> Items
);
