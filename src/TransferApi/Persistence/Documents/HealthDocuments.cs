using TransferApi.Training;

namespace TransferApi.Persistence.Documents;

// A data set's health report as stored, version 1: a snapshot of the data set when it was computed (each image's
// label and split then), so it reads the same however the data set changed since; the row says whether it is stale.

public sealed record HealthImageDocument(Guid ImageId, string? Label, DataSplit Split);

public sealed record HealthGroupDocument(IReadOnlyList<HealthImageDocument> Images, double Similarity);

public sealed record LabelIssueDocument(Guid ImageId, string Label, string SuggestedLabel, double Confidence);

public sealed record OutlierDocument(Guid ImageId, string? Label, DataSplit Split, double Score);

public sealed record ClassBalanceDocument(string Label, int Images, double Share);

/// <summary>A report's counts and what it describes, stored beside it so data set listings never read the
/// report.</summary>
public sealed record HealthCountsDocument(
    string Backbone,
    long DatasetVersion,
    DateTime ComputedAt,
    int NearDuplicateGroups,
    int LeakingGroups,
    int LabelIssues,
    int Outliers,
    int Warnings
);

/// <param name="FeaturesComputed">Images the computation ran through the backbone (the rest came from the feature
/// cache).</param>
/// <param name="Seconds">Wall time of the computation, features included.</param>
public sealed record HealthReportDocument(
    int? Version,
    string Backbone,
    long DatasetVersion,
    DateTime ComputedAt,
    double Seconds,
    int Images,
    int UnlabeledImages,
    int FeaturesComputed,
    double DuplicateThreshold,
    IReadOnlyList<HealthGroupDocument> NearDuplicates,
    IReadOnlyList<HealthGroupDocument> Leakage,
    IReadOnlyList<LabelIssueDocument> LabelIssues,
    IReadOnlyList<OutlierDocument> Outliers,
    IReadOnlyList<ClassBalanceDocument> ClassBalance,
    IReadOnlyList<string> Warnings
) : IVersionedDocument;
