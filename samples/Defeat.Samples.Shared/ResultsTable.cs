using System.Globalization;
using Defeat.Evaluation;
using Spectre.Console;

namespace Defeat.Samples.Shared;

/// <summary>The sample's one results table: method x epsilon, clean and robust accuracy, H, and DEFEAT's diagnostics.</summary>
public static class ResultsTable
{
    private static readonly string[] Columns =
        ["method", "eps", "clean", "robust (worst case)", "H", "robust by attack target", "branch acc. (clean images)", "codes used / perplexity", "flip rate"];

    /// <summary>Builds the console tables (accuracies in %): the results, then DEFEAT's diagnostics, so each fits a terminal.</summary>
    /// <param name="reports">One report per method.</param>
    /// <param name="dataset">What the results table's title names, e.g. "Fashion-MNIST, few-shot".</param>
    public static IReadOnlyList<Table> Build(IReadOnlyList<RobustnessReport> reports, string dataset)
    {
        var rows = Rows(reports).ToList();
        var results = new Table().Border(TableBorder.Rounded).Title($"[bold]{Markup.Escape(dataset)}: clean and robust accuracy (%)[/]");
        results.AddColumns(Columns[..5]);
        foreach (var row in rows)
            results.AddRow(row[..5].Select(Markup.Escape).ToArray());

        var diagnostics = new Table().Border(TableBorder.Rounded).Title("[bold]Where the robustness comes from[/]");
        diagnostics.AddColumns(Columns[..2].Concat(Columns[5..]).ToArray());
        foreach (var row in rows.Where(r => r[5].Length > 0))
            diagnostics.AddRow(row[..2].Concat(row[5..]).Select(Markup.Escape).ToArray());
        return diagnostics.Rows.Count > 0 ? [results, diagnostics] : [results];
    }

    /// <summary>The same table as GitHub markdown (for docs/reproduction.md and the run folder).</summary>
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
