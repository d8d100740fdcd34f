using System.Globalization;
using Defeat.Evaluation;
using Spectre.Console;

namespace Defeat.Samples.Shared;

/// <summary>The sample's one results table: method x epsilon, clean and robust accuracy, H, and DEFEAT's diagnostics.</summary>
public static class ResultsTable
{
    private static readonly string[] Columns =
        ["method", "eps", "clean", "robust (worst case)", "H", "robust by attack target", "branch acc. (clean images)", "codes used / perplexity", "flip rate"];

    /// <summary>
    /// Builds the console tables (accuracies in %), each narrow enough for an 80-column terminal: the results; where the
    /// robustness comes from (one row per attack target, with the codeword flip rate); and the branches and codes on
    /// clean images. The last two are left out when no report has what they show.
    /// </summary>
    /// <param name="reports">One report per method.</param>
    /// <param name="dataset">What the results table's title names, e.g. "Fashion-MNIST, few-shot".</param>
    public static IReadOnlyList<Table> Build(IReadOnlyList<RobustnessReport> reports, string dataset)
    {
        var results = new Table().Border(TableBorder.Rounded).Title($"[bold]{Markup.Escape(dataset)}: clean and robust accuracy (%)[/]");
        results.AddColumns(Columns[..5]);
        foreach (var row in Rows(reports))
            results.AddRow(row[..5].Select(Markup.Escape).ToArray());
        var tables = new List<Table> { results };

        // One row per (method, radius, attack target); the method and the radius only where they change.
        var targets = new Table().Border(TableBorder.Rounded).Title("[bold]Where the robustness comes from[/]");
        targets.AddColumns("method", "eps", "attacked", "robust", "flips");
        foreach (var report in reports)
        {
            string method = report.Name;
            foreach (var r in report.ByEpsilon.Where(r => r.RobustAccuracyByTarget.Count > 1))
            {
                string eps = Eps(r.Epsilon), flips = r.FlipRate is { } f ? Pct(f) : "";
                foreach (var (target, accuracy) in r.RobustAccuracyByTarget)
                {
                    targets.AddRow(new[] { method, eps, target, Pct(accuracy), flips }.Select(Markup.Escape).ToArray());
                    method = eps = flips = "";
                }
            }
        }
        if (targets.Rows.Count > 0) tables.Add(targets);

        var branchNames = reports.SelectMany(r => r.BranchAccuracy.Keys).Distinct().ToList();
        var branches = new Table().Border(TableBorder.Rounded).Title("[bold]Branches and codes on clean images[/]");
        branches.AddColumns(["method", .. branchNames, "codes used", "perplexity"]);
        foreach (var report in reports.Where(r => r.BranchAccuracy.Count > 0 || r.Codes is not null))
            branches.AddRow([Markup.Escape(report.Name), .. branchNames.Select(b => report.BranchAccuracy.TryGetValue(b, out var a) ? Pct(a) : ""),
                report.Codes?.CodesUsed.ToString(CultureInfo.InvariantCulture) ?? "",
                report.Codes?.Perplexity.ToString("F1", CultureInfo.InvariantCulture) ?? ""]);
        if (branches.Rows.Count > 0) tables.Add(branches);
        return tables;
    }

    /// <summary>The same table as GitHub markdown (for docs/reproduction.md and the run folder).</summary>
    public static string Markdown(IReadOnlyList<RobustnessReport> reports) => string.Join(Environment.NewLine,
        new[] { $"| {string.Join(" | ", Columns)} |", $"|{string.Concat(Enumerable.Repeat("---|", Columns.Length))}" }
            .Concat(Rows(reports).Select(row => $"| {string.Join(" | ", row)} |")));

    /// <summary>One line per (method, radius) whose evaluation compared a gradient-free attack with the white-box ones
    /// (<see cref="GradientMaskingCheck"/>): "gradient masking suspected" or not, with the counts; empty when none did.</summary>
    /// <param name="reports">One report per method.</param>
    public static string MaskingNotes(IReadOnlyList<RobustnessReport> reports)
    {
        var lines = reports.SelectMany(report => report.ByEpsilon.Where(r => r.GradientMasking is not null)
            .Select(r => $"- {report.Name}, eps {Eps(r.Epsilon)}: {r.GradientMasking}")).ToList();
        return lines.Count == 0 ? "" : string.Join(Environment.NewLine, ["", "Gradient-free against white-box attacks:", "", .. lines]) + Environment.NewLine;
    }

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
                yield return [report.Name, Eps(r.Epsilon), Pct(report.CleanAccuracy),
                    Pct(r.RobustAccuracy), Pct(r.HarmonicMean), byTarget, branches, codes, r.FlipRate is { } f ? Pct(f) : ""];
            }
        }
    }

    private static string Pct(double value) => (value * 100).ToString("F1", CultureInfo.InvariantCulture);

    private static string Eps(double epsilon) => $"{(epsilon * 255).ToString("0.##", CultureInfo.InvariantCulture)}/255";
}
