using static TorchSharp.torch;

namespace TransferApi.Training;

/// <summary>The one conversion of a [N, C] float tensor (probabilities, logits) to N managed rows.</summary>
internal static class TensorRows
{
    public static List<float[]> Of(Tensor values)
    {
        var columns = (int)values.shape[1];
        var flat = values.contiguous().data<float>().ToArray();
        return Enumerable
            .Range(0, (int)values.shape[0])
            .Select(n => flat.AsSpan(n * columns, columns).ToArray())
            .ToList();
    }
}
