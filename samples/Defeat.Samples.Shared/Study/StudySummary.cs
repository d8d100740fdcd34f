using System.Globalization;
using System.Text;
using Defeat.Evaluation;

namespace Defeat.Samples.Shared.Study;

/// <summary>One configuration's line of the summary.</summary>
/// <param name="Configuration">Name.</param>
/// <param name="Seeds">Seeds it has cells for.</param>
/// <param name="Clean">Clean accuracy over seeds (mean, 95 % t interval).</param>
/// <param name="Robust">Worst-case robust accuracy over seeds, per radius.</param>
/// <param name="Harmonic">H of clean and worst-case robust over seeds, per radius.</param>
/// <param name="ByAttack">Mean accuracy under each attack alone, per radius (cumulative, in the order run, under a survivors-only protocol).</param>
/// <param name="VersusBaseline">Paired comparison of worst-case robust accuracy with the baseline on the same seeds and images
/// (every image of every shared seed is one pair), per radius; null for the baseline itself or without a baseline cell.</param>
/// <param name="CleanVersusBaseline">The same for clean accuracy.</param>
/// <param name="CodesUsed">Mean codes used (null without a shield).</param>
/// <param name="Perplexity">Mean perplexity of code usage (null without a shield).</param>
/// <param name="RobustBranch">Mean clean accuracy of the robust branch alone (null without a shield).</param>
/// <param name="FlipRate">Mean code flip rate at the largest radius (null without a shield).</param>
/// <param name="CellSeconds">Mean wall time of a cell.</param>
public sealed record ConfigurationSummary(
    string Configuration, IReadOnlyList<int> Seeds, Interval Clean, IReadOnlyList<Interval> Robust, IReadOnlyList<Interval> Harmonic,
    IReadOnlyList<IReadOnlyDictionary<string, double>> ByAttack, IReadOnlyList<PairedComparison?> VersusBaseline, PairedComparison? CleanVersusBaseline,
    double? CodesUsed, double? Perplexity, double? RobustBranch, double? FlipRate, double CellSeconds);

/// <summary>
/// The summary of a study, computed from its cell files alone: per configuration, intervals over seeds and the paired
/// comparison with the baseline.
/// </summary>
/// <param name="Protocol">The protocol fingerprint every cell shares.</param>
/// <param name="Epsilons">Radii, in the cells' order.</param>
/// <param name="TestImages">Test images per cell.</param>
/// <param name="Configurations">One line per configuration, in the order of <see cref="StudyConfigurations.All"/> (unknown names last).</param>
/// <param name="Baseline">The configuration the paired comparisons are made against.</param>
/// <param name="Diverged">Cells of this protocol whose training diverged: left out of every mean and pairing.</param>
public sealed record StudySummary(string Protocol, IReadOnlyList<double> Epsilons, int TestImages, IReadOnlyList<ConfigurationSummary> Configurations,
    string Baseline, IReadOnlyList<DivergedCell> Diverged)
{
    /// <summary>Reads every cell file of <paramref name="cellFolder"/> and summarises them.</summary>
    /// <param name="cellFolder">The study's <c>cells/</c> folder.</param>
    /// <param name="baseline">The configuration every other is compared with.</param>
    /// <exception cref="InvalidDataException">No cells, or cells of different protocols or test sets.</exception>
    public static StudySummary FromFolder(string cellFolder, string baseline = StudyConfigurations.Baseline)
        => FromCells(StudyCell.LoadAll(cellFolder), baseline, DivergedCell.LoadAll(cellFolder));

    /// <summary>Summarises <paramref name="cells"/>.</summary>
    /// <param name="cells">Cells of one protocol.</param>
    /// <param name="baseline">The configuration every other is compared with.</param>
    /// <param name="diverged">Diverged cells of the folder; those of another protocol are ignored.</param>
    public static StudySummary FromCells(IReadOnlyList<StudyCell> cells, string baseline = StudyConfigurations.Baseline, IReadOnlyList<DivergedCell>? diverged = null)
    {
        ArgumentNullException.ThrowIfNull(cells);
        if (cells.Count == 0) throw new InvalidDataException("The study has no finished cells yet.");
        var protocols = cells.Select(c => c.Protocol).Distinct().ToList();
        if (protocols.Count > 1)
            throw new InvalidDataException($"Cells of {protocols.Count} different protocols cannot be pooled: {string.Join(" | ", protocols)}. Use one folder per protocol.");
        var first = cells[0];
        var epsilons = first.ByEpsilon.Select(r => r.Epsilon).ToList();
        if (cells.Any(c => c.TestImages != first.TestImages || !c.ByEpsilon.Select(r => r.Epsilon).SequenceEqual(epsilons)))
            throw new InvalidDataException("Cells disagree on the test images or the radii.");

        var order = StudyConfigurations.All.Select((c, i) => (c.Name, i)).ToDictionary(p => p.Name, p => p.i);
        var baseCells = cells.Where(c => c.Configuration == baseline).ToDictionary(c => c.Seed);
        var lines = cells.GroupBy(c => c.Configuration)
            .OrderBy(g => order.GetValueOrDefault(g.Key, int.MaxValue)).ThenBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => Summarise(g.OrderBy(c => c.Seed).ToList(), g.Key == baseline ? null : baseCells, epsilons.Count))
            .ToList();
        return new StudySummary(first.Protocol, epsilons, first.TestImages, lines, baseline,
            (diverged ?? []).Where(d => d.Protocol == first.Protocol).ToList());
    }

    private static ConfigurationSummary Summarise(List<StudyCell> cells, Dictionary<int, StudyCell>? baseline, int radii)
    {
        var robust = Enumerable.Range(0, radii).Select(e => StudyStatistics.MeanInterval(cells.Select(c => c.ByEpsilon[e].Robust).ToList())).ToList();
        var harmonic = Enumerable.Range(0, radii).Select(e => StudyStatistics.MeanInterval(
            cells.Select(c => Evaluation.RobustnessReport.Harmonic(c.Clean, c.ByEpsilon[e].Robust)).ToList())).ToList();
        var byAttack = Enumerable.Range(0, radii).Select(e => (IReadOnlyDictionary<string, double>)cells
            .SelectMany(c => c.ByEpsilon[e].ByAttack).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.Average(kv => kv.Value))).ToList();

        // Paired over every image of every seed both configurations have.
        var shared = baseline is null ? [] : cells.Where(c => baseline.ContainsKey(c.Seed)).ToList();
        PairedComparison? Paired(Func<StudyCell, string> bits) => shared.Count == 0 ? null : StudyStatistics.Compare(
            shared.SelectMany(c => StudyCell.Outcomes(bits(c))).ToList(),
            shared.SelectMany(c => StudyCell.Outcomes(bits(baseline![c.Seed]))).ToList());
        var versus = Enumerable.Range(0, radii).Select(e => Paired(c => c.ByEpsilon[e].RobustCorrect)).ToList();

        double? Mean(Func<StudyCell, double?> value) => cells.All(c => value(c) is not null) ? cells.Average(c => value(c)!.Value) : null;
        return new ConfigurationSummary(cells[0].Configuration, cells.Select(c => c.Seed).ToList(),
            StudyStatistics.MeanInterval(cells.Select(c => c.Clean).ToList()), robust, harmonic, byAttack, versus, Paired(c => c.CleanCorrect),
            Mean(c => c.CodesUsed), Mean(c => c.Perplexity), Mean(c => c.BranchAccuracy.TryGetValue("robust", out var a) ? a : null),
            Mean(c => c.ByEpsilon[^1].FlipRate), cells.Average(c => c.TrainSeconds + c.EvaluateSeconds));
    }

    /// <summary>The summary as markdown: the main table (percent, mean ± 95 % half-width over seeds), the paired
    /// comparison with the baseline, and per-attack accuracy at each radius.</summary>
    /// <param name="alsoPairedWith">A summary of the same cells paired with another configuration: its paired table is
    /// printed after this one's, or nothing when null.</param>
    public string Markdown(StudySummary? alsoPairedWith = null)
    {
        var md = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        string Pct(double v) => (100 * v).ToString("F1", inv);
        string Iv(Interval i) => i.Count > 1 ? $"{Pct(i.Mean)} ± {Pct(i.HalfWidth)}" : Pct(i.Mean);
        string Eps(double e) => (e * 255).ToString("0.##", inv) + "/255";

        md.AppendLine(inv, $"Protocol: `{Protocol}`; {TestImages} test images per cell; ± is the 95 % t interval over seeds (none for one seed).");
        md.AppendLine();
        md.Append("| configuration | seeds | clean |");
        foreach (var e in Epsilons) md.Append(inv, $" robust {Eps(e)} | H {Eps(e)} |");
        md.AppendLine(" codes | perplexity | robust branch | flip rate | s / cell |");
        md.Append("|---|---|---|").Append(string.Concat(Epsilons.Select(_ => "---|---|"))).AppendLine("---|---|---|---|---|");
        foreach (var c in Configurations)
        {
            md.Append(inv, $"| {c.Configuration} | {c.Seeds.Count} | {Iv(c.Clean)} |");
            for (int e = 0; e < Epsilons.Count; e++) md.Append(inv, $" {Iv(c.Robust[e])} | {Iv(c.Harmonic[e])} |");
            md.AppendLine(inv, $" {c.CodesUsed?.ToString("F0", inv) ?? "-"} | {c.Perplexity?.ToString("F1", inv) ?? "-"} | {(c.RobustBranch is { } r ? Pct(r) : "-")} | {(c.FlipRate is { } f ? Pct(f) : "-")} | {c.CellSeconds.ToString("F0", inv)} |");
        }

        if (Diverged.Count > 0)
        {
            md.AppendLine().AppendLine("Diverged in training (no cell; left out of every mean and pairing above and below):").AppendLine();
            foreach (var d in Diverged)
                md.AppendLine(inv, $"- {d.Configuration} seed {d.Seed}: {d.Reason.ReplaceLineEndings(" ")}");
        }
        md.Append(PairedMarkdown());
        if (alsoPairedWith is not null)
            md.Append(alsoPairedWith.PairedMarkdown());

        for (int e = 0; e < Epsilons.Count; e++)
        {
            var attacks = MergedOrder(Configurations.Select(c => c.ByAttack[e].Keys.ToList()));
            md.AppendLine().AppendLine(Protocol.Contains("survivors-only", StringComparison.Ordinal)
                ? $"Accuracy after each attack and every attack before it, in the order run, at {Eps(Epsilons[e])} (each attack ran only on the images still standing; mean over seeds):"
                : $"Accuracy under each attack alone at {Eps(Epsilons[e])} (mean over seeds; the worst case is the robust column above):").AppendLine();
            md.AppendLine("| configuration | " + string.Join(" | ", attacks) + " |");
            md.AppendLine("|---|" + string.Concat(attacks.Select(_ => "---|")));
            foreach (var c in Configurations)
                md.AppendLine("| " + c.Configuration + " | " + string.Join(" | ", attacks.Select(a => c.ByAttack[e].TryGetValue(a, out var v) ? Pct(v) : "-")) + " |");
        }
        return md.ToString();
    }

    /// <summary>The paired comparison with <see cref="Baseline"/> as a markdown table, with a blank line before it.</summary>
    public string PairedMarkdown()
    {
        var md = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        string Eps(double e) => (e * 255).ToString("0.##", inv) + "/255";
        string P(double p) => p < 0.001 ? "< 0.001" : p.ToString("F3", inv);
        md.AppendLine().AppendLine(inv, $"Paired with `{Baseline}` on the same seeds and images (difference in points with its 95 % interval; exact McNemar p):").AppendLine();
        md.Append("| configuration | pairs | clean diff | p |");
        foreach (var e in Epsilons) md.Append(inv, $" robust {Eps(e)} diff | p |");
        md.AppendLine().Append("|---|---|---|---|").AppendLine(string.Concat(Epsilons.Select(_ => "---|---|")));
        foreach (var c in Configurations.Where(c => c.CleanVersusBaseline is not null))
        {
            string D(PairedComparison p) => $"{(100 * p.Difference.Mean).ToString("+0.0;-0.0;0.0", inv)} [{(100 * p.Difference.Lower).ToString("F1", inv)}, {(100 * p.Difference.Upper).ToString("F1", inv)}]";
            md.Append(inv, $"| {c.Configuration} | {c.CleanVersusBaseline!.Images} | {D(c.CleanVersusBaseline)} | {P(c.CleanVersusBaseline.McNemarP)} |");
            foreach (var v in c.VersusBaseline) md.Append(inv, $" {D(v!)} | {P(v!.McNemarP)} |");
            md.AppendLine();
        }
        return md.ToString();
    }

    /// <summary>
    /// Every configuration's attacks in the order they ran, as one header: the longest order first, and an attack it lacks
    /// (a branch attack of another kind of model) placed right after the attack it followed. A plain union in order of
    /// first appearance would put a later attack of the first configuration before an earlier one of the next, and under
    /// a survivors-only protocol the columns must read left to right in the order run.
    /// </summary>
    public static List<string> MergedOrder(IEnumerable<IReadOnlyList<string>> orders)
    {
        var lists = orders.OrderByDescending(o => o.Count).ToList();
        var merged = lists.Count == 0 ? [] : new List<string>(lists[0]);
        foreach (var order in lists.Skip(1))
            for (int i = 0; i < order.Count; i++)
                if (!merged.Contains(order[i]))
                    merged.Insert(i == 0 ? 0 : merged.IndexOf(order[i - 1]) + 1, order[i]);
        return merged;
    }
}
