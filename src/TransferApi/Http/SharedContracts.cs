using TransferApi.Training;

namespace TransferApi.Http;

/// <summary>The classifier trained on the backbone's features.</summary>
/// <param name="Kind">Linear (softmax regression) or Mlp (one hidden layer with ReLU and dropout).</param>
/// <param name="HiddenUnits">Mlp hidden units (unused by Linear).</param>
/// <param name="Dropout">Mlp dropout (unused by Linear).</param>
public sealed record HeadResponse(HeadKind Kind, int HiddenUnits, double Dropout)
{
    public static HeadResponse From(HeadSpec head) => new(head.Kind, head.HiddenUnits, head.Dropout);
}
