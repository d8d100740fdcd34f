using System.Text.Json.Nodes;
using Defeat.Attacks;
using Defeat.Clip;
using Defeat.Checkpoints;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Model;
using Defeat.Prompting;
using Defeat.Samples.Shared;
using Defeat.Shield;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace Defeat.Samples.FashionMnist;

/// <summary>What one run of the experiment produced.</summary>
public sealed record ExperimentResults(IReadOnlyList<RobustnessReport> Reports, string PlotPath, string TablePath);

/// <summary>
/// The sample's experiment: zero-shot CLIP, APT-style adversarial prompt tuning and DEFEAT (with the
/// official quantizer settings and with settings against codebook collapse), trained on the same
/// few-shot images and attacked the same way.
/// </summary>
public sealed class Experiment(ExperimentSettings settings, ILoggerFactory loggers)
{
    /// <summary>Images per class set aside (seeded, fixed) for few-shot training; the backbone never sees them.</summary>
    public const int ReservePerClass = 100;

    private const int ReserveSeed = 20_260;

    /// <summary>The fixed split of the training set into the few-shot reserve and the backbone's pre-training pool.</summary>
    public static FewShotSplit ReserveSplit(LabeledImages train) =>
        FewShotSplit.Draw(train.LabelArray(), train.ClassNames.Count, ReservePerClass, ReserveSeed);

    /// <summary>Runs every method and writes the table (markdown) and the plot (PNG) to <paramref name="output"/>.</summary>
    public ExperimentResults Run(ClipModel backbone, LabeledImages train, LabeledImages test, string output, CancellationToken ct)
    {
        var study = new RobustnessStudy(new StudySettings(settings.Epochs, settings.LearningRate, BatchSize: 32, settings.TrainEpsilon,
            settings.Epsilons, settings.PgdSteps, settings.CurveEpsilons, settings.CurveSteps, settings.Seed,
            Path.Combine(output, "checkpoints")), loggers);
        var classes = train.ClassNames;
        var reserve = ReserveSplit(train).FewShot;
        var trainLabels = train.LabelArray(); // one copy of the 60,000 labels, not one per reserve image
        var reserveLabels = reserve.Select(i => trainLabels[i]).ToArray();
        var shots = FewShotSplit.Draw(reserveLabels, classes.Count, settings.Shots, settings.Seed).FewShot.Select(i => reserve[(int)i]).ToList();
        using var fewShot = train.Subset(shots);
        using var testSet = test.Subset(FewShotSplit.Stratified(test.LabelArray(), classes.Count, settings.TestPerClass, settings.Seed + 1));
        loggers.CreateLogger<Experiment>().LogInformation("{Shots} training images, {Test} test images", fewShot.Count, testSet.Count);

        return SpectreProgress.Run(progress =>
        {
            var methods = new List<(string Name, DefeatModel Model, bool Train)>
            {
                ("zero-shot", Build(backbone, classes, new DefeatModelOptions { UseShield = false, UseLearnedPrompts = false }, null), false),
                ("APT-style", Build(backbone, classes, new DefeatModelOptions { UseShield = false, TextRegularizationWeight = 0 }, null), true),
                ("DEFEAT (official)", Build(backbone, classes, new DefeatModelOptions(), RobustnessStudy.OfficialShield(backbone)), true),
                ("DEFEAT (anti-collapse)", Build(backbone, classes, new DefeatModelOptions(), RobustnessStudy.AntiCollapseShield(backbone, settings.Seed)), true),
            };

            var reports = new List<RobustnessReport>();
            var log = loggers.CreateLogger<Experiment>();
            foreach (var (name, model, train) in methods)
            {
                var watch = System.Diagnostics.Stopwatch.StartNew();
                if (train) study.Train(name, model, fewShot, new JsonObject { ["method"] = name, ["classes"] = new JsonArray(classes.Select(c => (JsonNode)c!).ToArray()) }, progress, ct);
                var trained = watch.Elapsed;
                model.eval();
                reports.Add(study.Evaluate(name, model, testSet, settings.Epsilons, settings.PgdSteps, progress, ct));
                log.LogInformation("{Method}: trained in {Train:F1} s, evaluated in {Eval:F1} s", name, trained.TotalSeconds, (watch.Elapsed - trained).TotalSeconds);
            }

            if (settings.Adaptive)
                reports.AddRange(methods.Select(m => study.EvaluateAdaptive(m.Name, m.Model, testSet, progress, ct)).ToList());
            string sanity = settings.Adaptive ? SanityChecks(methods, testSet, ct) : "";
            string scale = RobustnessStudy.CodebookScale(methods.Select(m => (m.Name, m.Model)), testSet);

            // Curves for the baselines and the DEFEAT variant with the better worst-case robustness at the largest radius.
            var defeat = methods.Skip(2).Zip(reports.Skip(2)).MaxBy(m => m.Second.ByEpsilon[^1].RobustAccuracy);
            var curved = new[] { (methods[0].Name, methods[0].Model, reports[0]), (methods[1].Name, methods[1].Model, reports[1]), (defeat.First.Name, defeat.First.Model, defeat.Second) };
            var byEpsilon = curved.Select(c => study.EpsilonCurve(c.Item1, c.Item2, c.Item3, testSet, progress, ct)).ToList();
            var bySteps = curved.Select(c => study.StepsCurve(c.Item1, c.Item2, c.Item3, testSet, progress, ct)).ToList();

            string plot = Path.Combine(output, "robustness.png");
            Plots.Write(plot, byEpsilon, bySteps, settings.Epsilons[^1]);
            string table = Path.Combine(output, "results.md");
            AtomicFile.WriteAllText(table, ResultsTable.Markdown(reports) + Environment.NewLine + scale + sanity);
            foreach (var (_, model, _) in methods) model.Dispose();
            return new ExperimentResults(reports, plot, table);
        });
    }

    /// <summary>The literature's sanity checks on each method: accuracy under PGD on the fused output at large radii
    /// must fall toward chance, and an unbounded attack (eps = 1) must succeed on (nearly) every image.</summary>
    private string SanityChecks(IEnumerable<(string Name, DefeatModel Model, bool Train)> methods, LabeledImages testSet, CancellationToken ct)
    {
        double[] radii = [16.0 / 255, 64.0 / 255, 1.0];
        var lines = new List<string>
        {
            "", $"Sanity checks (PGD-{settings.PgdSteps} on the fused output, {testSet.Count} images; chance is {100.0 / testSet.ClassNames.Count:F0} %):", "",
            "| method | eps 16/255 | eps 64/255 | eps 1 (unbounded) |", "|---|---|---|---|",
        };
        foreach (var (name, model, _) in methods)
        {
            var subject = AdaptiveAttackSuite.Subject(model, name);
            var accuracy = AttackSanityChecks.AccuracyByEpsilon(subject.Predict, testSet.Images, testSet.Labels, radii,
                eps => new PgdAttack(PgdOptions.DefeatEvaluation(eps) with { Steps = settings.PgdSteps, Seed = (ulong)settings.Seed }), ct);
            lines.Add($"| {name} | {string.Join(" | ", accuracy.Select(a => (a * 100).ToString("F1", System.Globalization.CultureInfo.InvariantCulture)))} |");
        }
        return string.Join(Environment.NewLine, lines) + Environment.NewLine;
    }

    private DefeatModel Build(ClipModel backbone, IReadOnlyList<string> classes, DefeatModelOptions options, PerturbShieldOptions? shield)
    {
        manual_seed(settings.Seed);
        var prompts = new PromptLearnerOptions { Seed = (ulong)settings.Seed };
        return DefeatModel.Create(backbone, classes, options with { UseShield = shield is not null }, prompts, shield);
    }
}
