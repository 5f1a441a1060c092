namespace TransferApi.Training.Evaluation;

/// <param name="OnlyFirstRight">Images the first model got right and the second wrong.</param>
/// <param name="OnlySecondRight">Images the second got right and the first wrong.</param>
/// <param name="PValue">Two-sided exact p-value of "both are equally accurate".</param>
public sealed record McNemarResult(int OnlyFirstRight, int OnlySecondRight, double PValue);

/// <summary>
/// McNemar's exact test for two classifiers scored on the same images: only the images exactly one of them gets
/// right count; under "equally accurate" each such image is a fair coin, so the p-value is twice the binomial tail
/// of the smaller count (at most 1).
/// </summary>
public static class McNemar
{
    public static McNemarResult Test(IReadOnlyList<bool> firstRight, IReadOnlyList<bool> secondRight)
    {
        ArgumentOutOfRangeException.ThrowIfNotEqual(firstRight.Count, secondRight.Count);
        var b = firstRight.Zip(secondRight).Count(p => p.First && !p.Second);
        var c = firstRight.Zip(secondRight).Count(p => !p.First && p.Second);
        return new McNemarResult(b, c, ExactPValue(b, c));
    }

    /// <summary>2 P(X &lt;= min(b, c)) for X ~ Binomial(b + c, 1/2), in log space so large counts do not
    /// underflow.</summary>
    public static double ExactPValue(int b, int c)
    {
        var n = b + c;
        if (n == 0)
            return 1;
        var logHalfPowerN = -n * Math.Log(2);
        double logChoose = 0;
        double tail = 0;
        for (var k = 0; k <= Math.Min(b, c); k++)
        {
            if (k > 0)
                logChoose += Math.Log(n - k + 1) - Math.Log(k);
            tail += Math.Exp(logChoose + logHalfPowerN);
        }
        return Math.Min(1, 2 * tail);
    }
}
