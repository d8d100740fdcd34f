using System.Globalization;
using Defeat.Evaluation;
using Spectre.Console;

namespace Defeat.Samples.FashionMnist;

/// <summary>The sample's one results table: method x epsilon, clean and robust accuracy, H, and DEFEAT's diagnostics.</summary>
public static class ResultsTable
{
    private static readonly string[] Columns =
        ["method", "eps", "clean", "robust (worst case)", "H", "robust by attack target", "branch acc. (clean images)", "codes used / perplexity", "flip rate"];

    /// <summary>Builds the console table (accuracies in %).</summary>
    public static Table Build(IReadOnlyList<RobustnessReport> reports)
    {
        var table = new Table().Border(TableBorder.Rounded).Title("[bold]Fashion-MNIST, few-shot: clean and robust accuracy (%)[/]");
        table.AddColumns(Columns);
        foreach (var row in Rows(reports))
            table.AddRow(row.Select(Markup.Escape).ToArray());
        return table;
    }

    /// <summary>The same table as GitHub markdown, for docs/reproduction.md.</summary>
    public static string Markdown(IReadOnlyList<RobustnessReport> reports) => string.Join(Environment.NewLine,
        new[] { $"| {string.Join(" | ", Columns)} |", $"|{string.Concat(Enumerable.Repeat("---|", Columns.Length))}" }
            .Concat(Rows(reports).Select(row => $"| {string.Join(" | ", row)} |")));

    private static IEnumerable<string[]> Rows(IReadOnlyList<RobustnessReport> reports)
    {
        foreach (var report in reports)
        {
            string branches = string.Join(", ", report.BranchAccuracy.Select(kv => $"{kv.Key} {Pct(kv.Value)}"));
            string codes = report.Codes is { } c ? $"{c.CodesUsed} / {c.Perplexity.ToString("F1", CultureInfo.InvariantCulture)}" : "";
            foreach (var r in report.ByEpsilon)
            {
                string byTarget = r.RobustAccuracyByTarget.Count <= 1 ? "" :
                    string.Join(", ", r.RobustAccuracyByTarget.Select(kv => $"{kv.Key} {Pct(kv.Value)}"));
                yield return [report.Name, $"{(r.Epsilon * 255).ToString("0.##", CultureInfo.InvariantCulture)}/255", Pct(report.CleanAccuracy),
                    Pct(r.RobustAccuracy), Pct(r.HarmonicMean), byTarget, branches, codes, r.FlipRate is { } f ? Pct(f) : ""];
            }
        }
    }

    private static string Pct(double value) => (value * 100).ToString("F1", CultureInfo.InvariantCulture);
}
