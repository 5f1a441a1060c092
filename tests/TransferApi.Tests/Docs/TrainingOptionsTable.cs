using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using TransferApi.Features.TrainingJobs;
using TransferApi.Training;

namespace TransferApi.Tests.Docs;

/// <summary>
/// The options table of docs/training.md, generated from the request record's own documentation (what Swagger
/// shows), and the defaults that documentation states, checked against the training core's.
/// </summary>
public static partial class TrainingOptionsTable
{
    public static IReadOnlyList<(string Name, string Description)> Options()
    {
        var docs = XDocument.Load(Path.Combine(AppContext.BaseDirectory, "TransferApi.xml"));
        var type = docs.Descendants("member")
            .Single(m => m.Attribute("name")!.Value == $"T:{typeof(CreateTrainingJobRequest).FullName}");
        return type.Elements("param")
            .Select(p => (Camel(p.Attribute("name")!.Value), Whitespace().Replace(p.Value, " ").Trim()))
            .ToList();
    }

    public static string Generate()
    {
        var table = new StringBuilder("| option | meaning, range and default |\n| --- | --- |\n");
        foreach (var (name, description) in Options())
            table.Append(CultureInfo.InvariantCulture, $"| `{name}` | {description.Replace("|", "\\|")} |\n");
        return table.ToString();
    }

    /// <summary>The "(default X)" each option's documentation states, beside the training core's own default.</summary>
    public static IEnumerable<(string Name, string Documented, string Actual)> StatedDefaults()
    {
        var defaults = new CreateTrainingJobRequest(Guid.Empty).ToOptions();
        var actual = new Dictionary<string, object?>
        {
            ["epochs"] = defaults.Epochs,
            ["batchSize"] = defaults.BatchSize,
            ["learningRate"] = defaults.LearningRate,
            ["validationFraction"] = defaults.ValidationFraction,
            ["seed"] = defaults.Seed,
            ["hiddenUnits"] = defaults.Head.HiddenUnits,
            ["dropout"] = defaults.Head.Dropout,
            ["optimizer"] = defaults.Optimizer,
            ["weightDecay"] = defaults.WeightDecay,
            ["momentum"] = defaults.Momentum,
            ["lrSchedule"] = defaults.Schedule,
            ["stepGamma"] = defaults.StepGamma,
            ["labelSmoothing"] = defaults.LabelSmoothing,
            ["classWeighted"] = defaults.ClassWeighted,
            ["unfreezeStages"] = defaults.UnfreezeStages,
            ["fineTuneEpochs"] = defaults.FineTuneEpochs,
            ["fineTuneLrFactor"] = defaults.FineTuneLrFactor,
            ["head"] = defaults.Head.Kind,
        };
        foreach (var (name, description) in Options())
        {
            if (!actual.TryGetValue(name, out var value))
                continue;
            var stated =
                StatedDefault().Match(description) is { Success: true } m ? m.Groups[1].Value
                : DefaultWord().Match(description) is { Success: true } w ? w.Groups[1].Value
                : null;
            if (stated is null)
                continue;
            yield return (name, stated, Format(value));
        }
    }

    private static string Format(object? value) =>
        value switch
        {
            bool flag => flag ? "true" : "false",
            IFormattable number => number.ToString(null, CultureInfo.InvariantCulture),
            _ => $"{value}",
        };

    private static string Camel(string name) => char.ToLowerInvariant(name[0]) + name[1..];

    [GeneratedRegex(@"\(default ([^ ),]+)")]
    private static partial Regex StatedDefault();

    /// <summary>"Adam (default)": the word before "(default)".</summary>
    [GeneratedRegex(@"(\w+) \(default[),]")]
    private static partial Regex DefaultWord();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();
}
