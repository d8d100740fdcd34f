using System.Text.Json.Nodes;
using Defeat.Backbones;
using Defeat.Checkpoints;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Model;
using Defeat.Prompting;
using Defeat.Samples.Shared;
using Defeat.Shield;
using TorchSharp;
using Defeat.Training;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace Defeat.Samples.Clip;

/// <summary>
/// The methods of the Fashion-MNIST sample on a real CLIP: zero-shot, APT-style adversarial prompt tuning and DEFEAT
/// (official quantizer settings, and settings against codebook collapse), trained on the same few-shot images on one
/// device and attacked the same way.
/// </summary>
internal sealed class Experiment(ClipSampleOptions options, Device device, ILoggerFactory loggers)
{
    private readonly RobustnessStudy _study = new(new StudySettings(
        options.Epochs, new DefeatTrainerOptions().LearningRate, options.BatchSize, options.TrainEpsilon,
        options.Epsilons, options.PgdSteps, options.CurveEpsilons, options.CurveSteps, options.Seed,
        Path.Combine(options.Output, "checkpoints"), options.EvaluationBatchSize, device), loggers);

    public ClipSampleResults Run(IVisionLanguageBackbone backbone, LabeledImages fewShot, LabeledImages testSet, string source,
        IProgress<StageProgress> progress, CancellationToken ct)
    {
        var classes = fewShot.ClassNames;
        var methods = new List<(string Name, DefeatModel Model, bool Train)>();
        try
        {
            methods.Add(("zero-shot", Build(backbone, classes, new DefeatModelOptions { UseShield = false, UseLearnedPrompts = false }, null), false));
            methods.Add(("APT-style", Build(backbone, classes, new DefeatModelOptions { UseShield = false, TextRegularizationWeight = 0 }, null), true));
            methods.Add(("DEFEAT (official)", Build(backbone, classes, new DefeatModelOptions(), RobustnessStudy.OfficialShield(backbone, options.CodebookSize)), true));
            methods.Add(("DEFEAT (anti-collapse)", Build(backbone, classes, new DefeatModelOptions(), RobustnessStudy.AntiCollapseShield(backbone, options.Seed, options.CodebookSize)), true));

            var reports = new List<RobustnessReport>();
            foreach (var (name, model, train) in methods)
            {
                if (train) _study.Train(name, model, fewShot, Metadata(name, fewShot), progress, ct);
                model.eval();
                reports.Add(_study.Evaluate(name, model, testSet, options.Epsilons, options.PgdSteps, progress, ct));
            }

            // Curves for the baselines and the DEFEAT variant with the better worst-case robustness at the largest radius.
            var defeat = methods.Skip(2).Zip(reports.Skip(2)).MaxBy(m => m.Second.ByEpsilon[^1].RobustAccuracy);
            var curved = new[] { (methods[0].Name, methods[0].Model, reports[0]), (methods[1].Name, methods[1].Model, reports[1]), (defeat.First.Name, defeat.First.Model, defeat.Second) };
            var byEpsilon = curved.Select(c => _study.EpsilonCurve(c.Item1, c.Item2, c.Item3, testSet, progress, ct)).ToList();
            var bySteps = curved.Select(c => _study.StepsCurve(c.Item1, c.Item2, c.Item3, testSet, progress, ct)).ToList();

            string plot = Path.Combine(options.Output, "robustness.png");
            Plots.Write(plot, byEpsilon, bySteps, options.Epsilons[^1]);
            string table = Path.Combine(options.Output, "results.md");
            string title = $"{source}, {options.Shots}-shot, {classes.Count} classes";
            AtomicFile.WriteAllText(table, $"{title}{Environment.NewLine}{Environment.NewLine}{ResultsTable.Markdown(reports)}{Environment.NewLine}");
            return new ClipSampleResults(reports, plot, table, classes, fewShot.Count, testSet.Count, device.ToString());
        }
        finally
        {
            foreach (var (_, model, _) in methods) model.Dispose();
        }
    }

    private DefeatModel Build(IVisionLanguageBackbone backbone, IReadOnlyList<string> classes, DefeatModelOptions modelOptions, PerturbShieldOptions? shield)
    {
        manual_seed(options.Seed);
        var prompts = new PromptLearnerOptions { Seed = (ulong)options.Seed };
        var model = DefeatModel.Create(backbone, classes, modelOptions with { UseShield = shield is not null }, prompts, shield);
        // DefeatModel moves only its trainable parts; the backbone was moved by the runner.
        model.to(device);
        return model;
    }

    private JsonObject Metadata(string name, LabeledImages fewShot) => new()
    {
        ["method"] = name,
        ["classes"] = new JsonArray(fewShot.ClassNames.Select(c => (JsonNode)c!).ToArray()),
        ["clip"] = Path.GetFullPath(options.ClipPath),
        ["tecoa"] = options.TeCoAPath is null ? null : Path.GetFullPath(options.TeCoAPath),
        ["shots"] = options.Shots,
    };
}
