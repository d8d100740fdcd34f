using Defeat.Evaluation;
using Defeat.Samples.Shared;
using Spectre.Console;

namespace Defeat.Tests.Samples;

/// <summary>What the samples print: plain progress lines when the console is not interactive, tables that read at
/// 80 columns, and one error handling for both samples.</summary>
public class SampleConsoleTests
{
    private static (IAnsiConsole Console, StringWriter Output) Console(int width, bool interactive)
    {
        var output = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = interactive ? InteractionSupport.Yes : InteractionSupport.No,
            Out = new AnsiConsoleOutput(output),
        });
        console.Profile.Width = width;
        return (console, output);
    }

    [Test]
    public void WithoutAnInteractiveConsoleEachFinishedStageIsOnePlainLine()
    {
        var (console, output) = Console(80, interactive: false);
        int result = SpectreProgress.Run(progress =>
        {
            for (int step = 1; step <= 50; step++) progress.Report(new StageProgress("train APT-style", step, 50, $"epoch {step / 10 + 1}, loss 1.5"));
            for (int done = 100; done <= 300; done += 100) progress.Report(new StageProgress("evaluate APT-style", done, 300, "eps=4/255 fused"));
            progress.Report(new StageProgress("curve APT-style", 1, 1));
            return 7;
        }, console);

        Assert.That(result, Is.EqualTo(7));
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToList();
        Assert.That(lines, Has.Count.EqualTo(3), output.ToString());
        Assert.That(lines[0], Does.StartWith("done: train APT-style 50/50 (epoch 6, loss 1.5) in "));
        Assert.That(lines[1], Does.StartWith("done: evaluate APT-style 300/300 (eps=4/255 fused) in "));
        Assert.That(lines[2], Does.StartWith("done: curve APT-style 1/1 in "));
    }

    private static RobustnessReport Report(string name, bool defeat, bool adaptive)
    {
        var targets = !defeat ? new Dictionary<string, double> { ["fused"] = 0.125 }
            : adaptive ? new Dictionary<string, double>
            {
                ["pgd-ce/fused"] = 0.5, ["pgd-ce/clean"] = 0.35, ["pgd-ce/robust"] = 0.6, ["pgd-margin/fused"] = 0.45,
                ["pgd-dlr/fused"] = 0.475, ["pgd-ce-restarts/fused"] = 0.4321,
            }
            : new Dictionary<string, double> { ["fused"] = 0.5, ["clean"] = 0.35, ["robust"] = 0.6 };
        var branches = defeat ? new Dictionary<string, double> { ["clean"] = 0.8123, ["robust"] = 0.6871 } : new Dictionary<string, double>();
        var epsilons = new[] { 1.0 / 255, 4.0 / 255 }.Select(e => new EpsilonResult(e, targets, targets.Values.Min(), 0.55, defeat ? 0.0123 : null)).ToList();
        return new RobustnessReport(name, 200, 0.7, branches, defeat ? new CodeUsage(37, 12.34) : null, epsilons);
    }

    [Test]
    public void TheTablesReadAtEightyColumns()
    {
        var reports = new List<RobustnessReport> { Report("zero-shot", false, false), Report("APT-style", false, false) };
        foreach (var adaptive in new[] { false, true })
        {
            reports.Add(Report("DEFEAT (official)" + (adaptive ? " [adaptive]" : ""), true, adaptive));
            reports.Add(Report("DEFEAT (anti-collapse)" + (adaptive ? " [adaptive]" : ""), true, adaptive));
        }
        var tables = ResultsTable.Build(reports, "Fashion-MNIST, few-shot");
        Assert.That(tables.Select(t => t.Title?.Text), Is.EqualTo(new[]
        {
            "[bold]Fashion-MNIST, few-shot: clean and robust accuracy (%)[/]", "[bold]Where the robustness comes from[/]", "[bold]Branches and codes on clean images[/]",
        }));

        var (console, output) = Console(80, interactive: false);
        foreach (var table in tables) console.Write(table);
        var lines = output.ToString().Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        Assert.That(lines.Max(l => l.Length), Is.LessThanOrEqualTo(80), output.ToString());
        var text = string.Join("\n", lines);
        // Nothing is cut into fragments: every attack name, number and word of a method name stands whole on one line.
        foreach (var token in new[] { "pgd-ce-restarts/fused", "pgd-margin/fused", "pgd-ce/robust", "(anti-collapse)", "[adaptive]", "43.2", "1.2", "12.3", "4/255", "81.2", "68.7" })
            Assert.That(text, Does.Contain(token), $"'{token}' whole\n{text}");
        // One row per attack target: each DEFEAT report at each radius lists all its targets.
        Assert.That(lines.Count(l => l.Contains("pgd-ce-restarts/fused", StringComparison.Ordinal)), Is.EqualTo(2 * 2));
        Assert.That(lines.Count(l => l.Contains(" robust ", StringComparison.Ordinal) && l.Contains("60.0", StringComparison.Ordinal)), Is.EqualTo(2 * 2));
    }

    private sealed class BadData(string message) : Exception(message);

    [Test]
    public void BothSamplesGuardTheSameWay()
    {
        Assert.That(SampleCommand.Guarded(() => { }), Is.EqualTo(0));
        Assert.That(SampleCommand.Guarded(() => throw new ArgumentException("bad option")), Is.EqualTo(SampleCommand.UsageError));
        Assert.That(SampleCommand.Guarded(() => throw new FileNotFoundException("no file")), Is.EqualTo(SampleCommand.UsageError));
        Assert.That(SampleCommand.Guarded(() => throw new OperationCanceledException()), Is.EqualTo(SampleCommand.Cancelled));
        Assert.That(SampleCommand.Guarded(() => throw new BadData("broken"), typeof(BadData)), Is.EqualTo(SampleCommand.UsageError));
        Assert.Throws<BadData>(() => SampleCommand.Guarded(() => throw new BadData("a bug")));
        Assert.Throws<InvalidOperationException>(() => SampleCommand.Guarded(() => throw new InvalidOperationException("a bug")));
    }
}
