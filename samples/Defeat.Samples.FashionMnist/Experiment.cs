using System.Text.Json.Nodes;
using Defeat.Attacks;
using Defeat.Clip;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Prompting;
using Defeat.Quantization;
using Defeat.Samples.Shared;
using Defeat.Shield;
using Defeat.Training;
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
        var classes = train.ClassNames;
        var reserve = ReserveSplit(train).FewShot;
        var reserveLabels = reserve.Select(i => train.LabelArray()[i]).ToArray();
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
                ("DEFEAT (official)", Build(backbone, classes, new DefeatModelOptions(), OfficialShield(backbone)), true),
                ("DEFEAT (anti-collapse)", Build(backbone, classes, new DefeatModelOptions(), AntiCollapseShield(backbone)), true),
            };

            var reports = new List<RobustnessReport>();
            var log = loggers.CreateLogger<Experiment>();
            foreach (var (name, model, train) in methods)
            {
                var watch = System.Diagnostics.Stopwatch.StartNew();
                if (train) Train(name, model, fewShot, output, progress, ct);
                var trained = watch.Elapsed;
                model.eval();
                reports.Add(Evaluate(name, model, testSet, settings.Epsilons, settings.PgdSteps, progress, ct));
                log.LogInformation("{Method}: trained in {Train:F1} s, evaluated in {Eval:F1} s", name, trained.TotalSeconds, (watch.Elapsed - trained).TotalSeconds);
            }

            if (settings.Adaptive)
                reports.AddRange(methods.Select(m => Adaptive(m.Name, m.Model, testSet, progress, ct)).ToList());
            string sanity = settings.Adaptive ? SanityChecks(methods, testSet, ct) : "";

            // Curves for the baselines and the DEFEAT variant with the better worst-case robustness at the largest radius.
            var defeat = methods.Skip(2).Zip(reports.Skip(2)).MaxBy(m => m.Second.ByEpsilon[^1].RobustAccuracy);
            var curved = new[] { (methods[0].Name, methods[0].Model, reports[0]), (methods[1].Name, methods[1].Model, reports[1]), (defeat.First.Name, defeat.First.Model, defeat.Second) };
            var byEpsilon = curved.Select(c => EpsilonCurve(c.Item1, c.Item2, c.Item3, testSet, progress, ct)).ToList();
            var bySteps = curved.Select(c => StepsCurve(c.Item1, c.Item2, c.Item3, testSet, progress, ct)).ToList();

            string plot = Path.Combine(output, "robustness.png");
            Plots.Write(plot, byEpsilon, bySteps, settings.Epsilons[^1]);
            string table = Path.Combine(output, "results.md");
            WriteAtomically(table, ResultsTable.Markdown(reports) + Environment.NewLine + sanity);
            foreach (var (_, model, _) in methods) model.Dispose();
            return new ExperimentResults(reports, plot, table);
        });
    }

    /// <summary>Every attack of <see cref="AdaptiveAttackSuite"/> at the largest radius, scored per sample worst case.</summary>
    private RobustnessReport Adaptive(string name, DefeatModel model, LabeledImages testSet, IProgress<StageProgress> progress, CancellationToken ct)
    {
        var evaluator = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = [settings.Epsilons[^1]],
            Attacks = AdaptiveAttackSuite.Attacks(model, new AdaptiveAttackOptions { Steps = settings.PgdSteps, Restarts = 3, Seed = (ulong)settings.Seed }),
        }, loggers.CreateLogger<RobustnessEvaluator>());
        string label = $"{name} [adaptive]";
        return evaluator.Evaluate(AdaptiveAttackSuite.Subject(model, label), testSet,
            new Progress<EvaluationProgress>(p => progress.Report(new StageProgress($"adaptive {name}", (int)p.Done, (int)p.Total, p.Stage))), ct);
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

    private PerturbShieldOptions OfficialShield(ClipModel backbone) => new()
    {
        // The official VQ-VAE halves the width (512 -> 256) and keeps 512 codes; the same ratio here.
        FeatureDim = backbone.FeatureDim,
        HiddenDim = backbone.FeatureDim / 2,
        CodebookSize = 512,
    };

    private PerturbShieldOptions AntiCollapseShield(ClipModel backbone)
    {
        var official = OfficialShield(backbone);
        return official with
        {
            // Codes start on the data (k-means on the first batch), follow it by EMA, and unused ones restart
            // on current encoder outputs: the usual cures for a codebook that collapses to a few codes.
            Quantizer = new VectorQuantizerOptions
            {
                CodebookSize = official.CodebookSize,
                Dim = official.HiddenDim,
                KMeansInit = true,
                CodebookUpdate = CodebookUpdate.ExponentialMovingAverage,
                DeadCodeThreshold = 0.01,
                Seed = settings.Seed,
            },
        };
    }

    private DefeatModel Build(ClipModel backbone, IReadOnlyList<string> classes, DefeatModelOptions options, PerturbShieldOptions? shield)
    {
        manual_seed(settings.Seed);
        var prompts = new PromptLearnerOptions { Seed = (ulong)settings.Seed, Templates = CaptionTemplates.ZeroShot };
        return DefeatModel.Create(backbone, classes, options with { UseShield = shield is not null }, prompts, shield);
    }

    private void Train(string name, DefeatModel model, LabeledImages fewShot, string output, IProgress<StageProgress> progress, CancellationToken ct)
    {
        var trainer = new DefeatTrainer(new DefeatTrainerOptions
        {
            Epochs = settings.Epochs,
            LearningRate = settings.LearningRate,
            Attack = PgdOptions.DefeatTraining(settings.TrainEpsilon),
            Seed = settings.Seed,
            CheckpointDirectory = Path.Combine(output, "checkpoints", Slug(name)),
        }, loggers.CreateLogger<DefeatTrainer>());
        var metadata = new JsonObject { ["method"] = name, ["classes"] = new JsonArray(fewShot.ClassNames.Select(c => (JsonNode)c!).ToArray()) };
        trainer.Train(model, fewShot, metadata,
            new Progress<TrainingProgress>(p => progress.Report(new StageProgress($"train {name}", p.Step, p.TotalSteps, $"epoch {p.Epoch}, loss {p.Loss:F3}"))), ct);
    }

    private RobustnessReport Evaluate(string name, DefeatModel model, LabeledImages testSet, IReadOnlyList<double> epsilons, int steps,
        IProgress<StageProgress> progress, CancellationToken ct, bool quiet = false)
    {
        var evaluator = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = epsilons,
            AttackFactory = eps => new PgdAttack(PgdOptions.DefeatEvaluation(eps) with { Steps = steps, Seed = (ulong)settings.Seed }),
        }, loggers.CreateLogger<RobustnessEvaluator>());
        string stage = quiet ? $"curve {name}" : $"evaluate {name}";
        return evaluator.Evaluate(AdaptiveAttackSuite.Subject(model, name), testSet,
            new Progress<EvaluationProgress>(p => progress.Report(new StageProgress(stage, (int)p.Done, (int)p.Total, p.Stage))), ct);
    }

    private Curve EpsilonCurve(string name, DefeatModel model, RobustnessReport main, LabeledImages testSet, IProgress<StageProgress> progress, CancellationToken ct)
    {
        // Radii already measured are reused; radius 0 is the clean accuracy.
        var missing = settings.CurveEpsilons.Where(e => e > 0 && main.ByEpsilon.All(r => r.Epsilon != e)).ToList();
        var extra = missing.Count == 0 ? [] : Evaluate(name, model, testSet, missing, settings.PgdSteps, progress, ct, quiet: true).ByEpsilon;
        var all = main.ByEpsilon.Concat(extra).ToDictionary(r => r.Epsilon, r => r.RobustAccuracy);
        all[0] = main.CleanAccuracy;
        var xs = settings.CurveEpsilons.Order().ToList();
        return new Curve(name, xs, xs.Select(e => all[e]).ToList());
    }

    private Curve StepsCurve(string name, DefeatModel model, RobustnessReport main, LabeledImages testSet, IProgress<StageProgress> progress, CancellationToken ct)
    {
        double eps = settings.Epsilons[^1];
        var points = new SortedDictionary<int, double> { [settings.PgdSteps] = main.ByEpsilon[^1].RobustAccuracy };
        foreach (var steps in settings.CurveSteps.Where(s => s != settings.PgdSteps))
            points[steps] = Evaluate(name, model, testSet, [eps], steps, progress, ct, quiet: true).ByEpsilon[0].RobustAccuracy;
        return new Curve(name, points.Keys.Select(k => (double)k).ToList(), points.Values.ToList());
    }

    private static string Slug(string name) => new(name.ToLowerInvariant().Select(c => char.IsLetterOrDigit(c) ? c : '-').ToArray());

    private static void WriteAtomically(string path, string text)
    {
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }
}
