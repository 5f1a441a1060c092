using System.Globalization;

namespace TransferApi.Features.Models;

/// <summary>/predict's `threshold`: a probability every label must reach, or `auto` for each label's own.</summary>
public readonly record struct LabelFilter(bool Auto, double Value)
{
    /// <summary>Absent: 0 (every label); a number in [0, 1]; or `auto` (any case).</summary>
    public static bool TryParse(string? text, out LabelFilter filter)
    {
        filter = new LabelFilter(false, 0);
        if (string.IsNullOrEmpty(text))
            return true;
        if (text.Equals("auto", StringComparison.OrdinalIgnoreCase))
        {
            filter = new LabelFilter(true, 0);
            return true;
        }
        if (
            !double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
            || value is < 0 or > 1
            || double.IsNaN(value)
        )
            return false;
        filter = new LabelFilter(false, value);
        return true;
    }
}
