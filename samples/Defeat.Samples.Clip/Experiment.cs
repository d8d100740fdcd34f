using System.Text.Json.Nodes;
using Defeat.Attacks;
using Defeat.Backbones;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Prompting;
using Defeat.Quantization;
using Defeat.Samples.Shared;
using Defeat.Shield;
using Defeat.Training;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Samples.Clip;

/// <summary>
/// The methods of the Fashion-MNIST sample on a real CLIP: zero-shot, APT-style adversarial prompt tuning and DEFEAT
/// (official quantizer settings, and settings against codebook collapse), trained on the same few-shot images on one
/// device and attacked the same way.
/// </summary>
internal sealed class Experiment(ClipSampleOptions options, Device device, ILoggerFactory loggers)
{
    public ClipSampleResults Run(IVisionLanguageBackbone backbone, LabeledImages fewShot, LabeledImages testSet, string source,
        IProgress<StageProgress> progress, CancellationToken ct)
    {
        var classes = fewShot.ClassNames;
        var methods = new List<(string Name, DefeatModel Model, bool Train)>();
        try
        {
            methods.Add(("zero-shot", Build(backbone, classes, new DefeatModelOptions { UseShield = false, UseLearnedPrompts = false }, null), false));
            methods.Add(("APT-style", Build(backbone, classes, new DefeatModelOptions { UseShield = false, TextRegularizationWeight = 0 }, null), true));
            methods.Add(("DEFEAT (official)", Build(backbone, classes, new DefeatModelOptions(), OfficialShield(backbone)), true));
            methods.Add(("DEFEAT (anti-collapse)", Build(backbone, classes, new DefeatModelOptions(), AntiCollapseShield(backbone)), true));

            var reports = new List<RobustnessReport>();
            foreach (var (name, model, train) in methods)
            {
                if (train) Train(name, model, fewShot, progress, ct);
                model.eval();
                reports.Add(Evaluate(name, model, testSet, options.Epsilons, options.PgdSteps, progress, ct));
            }

            // Curves for the baselines and the DEFEAT variant with the better worst-case robustness at the largest radius.
            var defeat = methods.Skip(2).Zip(reports.Skip(2)).MaxBy(m => m.Second.ByEpsilon[^1].RobustAccuracy);
            var curved = new[] { (methods[0].Name, methods[0].Model, reports[0]), (methods[1].Name, methods[1].Model, reports[1]), (defeat.First.Name, defeat.First.Model, defeat.Second) };
            var byEpsilon = curved.Select(c => EpsilonCurve(c.Item1, c.Item2, c.Item3, testSet, progress, ct)).ToList();
            var bySteps = curved.Select(c => StepsCurve(c.Item1, c.Item2, c.Item3, testSet, progress, ct)).ToList();

            string plot = Path.Combine(options.Output, "robustness.png");
            Plots.Write(plot, byEpsilon, bySteps, options.Epsilons[^1]);
            string table = Path.Combine(options.Output, "results.md");
            string title = $"{source}, {options.Shots}-shot, {classes.Count} classes";
            WriteAtomically(table, $"{title}{Environment.NewLine}{Environment.NewLine}{ResultsTable.Markdown(reports)}{Environment.NewLine}");
            return new ClipSampleResults(reports, plot, table, classes, fewShot.Count, testSet.Count, device.ToString());
        }
        finally
        {
            foreach (var (_, model, _) in methods) model.Dispose();
        }
    }

    private PerturbShieldOptions OfficialShield(IVisionLanguageBackbone backbone) => new()
    {
        // The official VQ-VAE halves the width (512 -> 256) and keeps 512 codes.
        FeatureDim = backbone.FeatureDim,
        HiddenDim = backbone.FeatureDim / 2,
        CodebookSize = options.CodebookSize,
    };

    private PerturbShieldOptions AntiCollapseShield(IVisionLanguageBackbone backbone)
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
                Seed = options.Seed,
            },
        };
    }

    private DefeatModel Build(IVisionLanguageBackbone backbone, IReadOnlyList<string> classes, DefeatModelOptions modelOptions, PerturbShieldOptions? shield)
    {
        manual_seed(options.Seed);
        var prompts = new PromptLearnerOptions { Seed = (ulong)options.Seed, Templates = ClipSampleRunner.ZeroShotTemplates };
        var model = DefeatModel.Create(backbone, classes, modelOptions with { UseShield = shield is not null }, prompts, shield);
        // DefeatModel moves only its trainable parts; the backbone was moved by the runner.
        model.to(device);
        return model;
    }

    private void Train(string name, DefeatModel model, LabeledImages fewShot, IProgress<StageProgress> progress, CancellationToken ct)
    {
        var trainer = new DefeatTrainer(new DefeatTrainerOptions
        {
            Epochs = options.Epochs,
            WarmupEpochs = Math.Min(1, options.Epochs - 1),
            BatchSize = options.BatchSize,
            Attack = PgdOptions.DefeatTraining(options.TrainEpsilon),
            Seed = options.Seed,
            CheckpointDirectory = Path.Combine(options.Output, "checkpoints", Slug(name)),
            Device = device,
        }, loggers.CreateLogger<DefeatTrainer>());
        var metadata = new JsonObject
        {
            ["method"] = name,
            ["classes"] = new JsonArray(fewShot.ClassNames.Select(c => (JsonNode)c!).ToArray()),
            ["clip"] = Path.GetFullPath(options.ClipPath),
            ["tecoa"] = options.TeCoAPath is null ? null : Path.GetFullPath(options.TeCoAPath),
            ["shots"] = options.Shots,
        };
        trainer.Train(model, fewShot, metadata,
            new SyncProgress<TrainingProgress>(p => progress.Report(new StageProgress($"train {name}", p.Step, p.TotalSteps, $"epoch {p.Epoch}, loss {p.Loss:F3}"))), ct);
    }

    private RobustnessReport Evaluate(string name, DefeatModel model, LabeledImages testSet, IReadOnlyList<double> epsilons, int steps,
        IProgress<StageProgress> progress, CancellationToken ct, bool quiet = false)
    {
        var evaluator = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = epsilons,
            BatchSize = options.EvaluationBatchSize,
            Device = device,
            AttackFactory = eps => new PgdAttack(PgdOptions.DefeatEvaluation(eps) with { Steps = steps, Seed = (ulong)options.Seed }),
        }, loggers.CreateLogger<RobustnessEvaluator>());
        string stage = quiet ? $"curve {name}" : $"evaluate {name}";
        return evaluator.Evaluate(AdaptiveAttackSuite.Subject(model, name), testSet,
            new SyncProgress<EvaluationProgress>(p => progress.Report(new StageProgress(stage, (int)p.Done, (int)p.Total, p.Stage))), ct);
    }

    private Curve EpsilonCurve(string name, DefeatModel model, RobustnessReport main, LabeledImages testSet, IProgress<StageProgress> progress, CancellationToken ct)
    {
        // Radii already measured are reused; radius 0 is the clean accuracy.
        var missing = options.CurveEpsilons.Where(e => e > 0 && main.ByEpsilon.All(r => r.Epsilon != e)).Distinct().ToList();
        var extra = missing.Count == 0 ? [] : Evaluate(name, model, testSet, missing, options.PgdSteps, progress, ct, quiet: true).ByEpsilon;
        var all = main.ByEpsilon.Concat(extra).ToDictionary(r => r.Epsilon, r => r.RobustAccuracy);
        all[0] = main.CleanAccuracy;
        var xs = options.CurveEpsilons.Distinct().Order().ToList();
        return new Curve(name, xs, xs.Select(e => all[e]).ToList());
    }

    private Curve StepsCurve(string name, DefeatModel model, RobustnessReport main, LabeledImages testSet, IProgress<StageProgress> progress, CancellationToken ct)
    {
        double eps = options.Epsilons[^1];
        var points = new SortedDictionary<int, double> { [options.PgdSteps] = main.ByEpsilon[^1].RobustAccuracy };
        foreach (var steps in options.CurveSteps.Where(s => s != options.PgdSteps).Distinct())
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
