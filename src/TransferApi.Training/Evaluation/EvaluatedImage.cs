namespace TransferApi.Training.Evaluation;

/// <summary>How the model did on one held-out image.</summary>
/// <param name="Image">Its index in the images given to the trainer.</param>
/// <param name="Probability">The calibrated probability of <paramref name="Predicted"/>.</param>
/// <param name="Loss">Calibrated cross-entropy of the true label: high for confident mistakes.</param>
/// <param name="Novelty">How unlike the training images it is (null without a novelty model).</param>
public sealed record EvaluatedImage(
    int Image,
    string Label,
    string Predicted,
    double Probability,
    double Loss,
    double? Novelty
);

/// <param name="Split">The images the curves come from: "validation", or "test" without validation images.</param>
public sealed record ThresholdReport(string Split, double? TargetPrecision, IReadOnlyList<ClassThreshold> Classes);
