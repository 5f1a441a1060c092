using TransferApi.Training;
using TransferApi.Training.Evaluation;

namespace TransferApi.Http;

/// <param name="Entry">The file's path in the archive, or its file name.</param>
/// <param name="Reason">Why it was not stored.</param>
public sealed record RejectedFile(string Entry, string Reason);

/// <summary>The classifier trained on the backbone's features.</summary>
/// <param name="Kind">Linear (softmax regression) or Mlp (one hidden layer with ReLU and dropout).</param>
/// <param name="HiddenUnits">Mlp hidden units (unused by Linear).</param>
/// <param name="Dropout">Mlp dropout (unused by Linear).</param>
public sealed record HeadResponse(HeadKind Kind, int HiddenUnits, double Dropout)
{
    public static HeadResponse From(HeadSpec head) => new(head.Kind, head.HiddenUnits, head.Dropout);
}

/// <param name="Temperature">Logits are divided by it before the softmax (above 1: the raw model was
/// overconfident).</param>
/// <param name="ExpectedCalibrationErrorBefore">Expected calibration error (15 bins) before scaling, on the fitting
/// images.</param>
/// <param name="ExpectedCalibrationErrorAfter">The same after scaling.</param>
/// <param name="Method">`validation`, or `cross-validation` (out-of-fold training images) when validation had too
/// few.</param>
/// <param name="Images">Images it was fitted on.</param>
public sealed record CalibrationResponse(
    double Temperature,
    double ExpectedCalibrationErrorBefore,
    double ExpectedCalibrationErrorAfter,
    string Method,
    int Images
)
{
    public static CalibrationResponse? From(Calibration? c) =>
        c is null
            ? null
            : new(c.Temperature, c.ExpectedCalibrationErrorBefore, c.ExpectedCalibrationErrorAfter, c.Method, c.Images);
}
