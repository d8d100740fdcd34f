using System.Text.Json.Nodes;
using Defeat.Backbones;
using Defeat.Checkpoints;
using Defeat.Data;
using Defeat.Samples.Shared;
using Defeat.Training;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace Defeat.Samples.Clip;

/// <summary>
/// The methods of the Fashion-MNIST sample on a real CLIP: zero-shot, APT-style adversarial prompt tuning, FAP and DEFEAT
/// (official quantizer settings, and settings against codebook collapse), trained on the same few-shot images on one
/// device and attacked the same way.
/// </summary>
internal sealed class Experiment(ClipSampleOptions options, Device device, ILoggerFactory loggers)
{
    private readonly RobustnessStudy _study = new(new StudySettings(
        options.Epochs, new DefeatTrainerOptions().LearningRate, options.BatchSize, options.TrainEpsilon,
        options.Epsilons, options.PgdSteps, options.CurveEpsilons, options.CurveSteps, options.Seed,
        Path.Combine(options.Output, "checkpoints"), options.EvaluationBatchSize, device, options.AutoAttack), loggers);

    public ClipSampleResults Run(IVisionLanguageBackbone backbone, LabeledImages fewShot, LabeledImages testSet, string source,
        IProgress<StageProgress> progress, CancellationToken ct)
    {
        var classes = fewShot.ClassNames;
        using var methods = _study.Methods(backbone, classes, options.CodebookSize);
        var reports = _study.TrainAndEvaluate(methods, fewShot, testSet, name => Metadata(name, fewShot), progress, ct);
        if (options.AutoAttack)
            reports.AddRange(methods.Select(m => _study.EvaluateAdaptive(m.Name, m.Model, testSet, progress, ct)).ToList());
        string plot = _study.WritePlot(Path.Combine(options.Output, "robustness.png"), methods, reports, testSet, progress, ct);
        string table = Path.Combine(options.Output, "results.md");
        string title = $"{source}, {options.Shots}-shot, {classes.Count} classes";
        AtomicFile.WriteAllText(table, $"{title}{Environment.NewLine}{Environment.NewLine}{ResultsTable.Markdown(reports)}{Environment.NewLine}{ResultsTable.MaskingNotes(reports)}");
        return new ClipSampleResults(reports, plot, table, classes, fewShot.Count, testSet.Count, device.ToString());
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
