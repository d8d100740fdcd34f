using System.Text.Json.Nodes;
using Defeat.Checkpoints;
using Defeat.Clip;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Samples.Shared;
using Microsoft.Extensions.Logging;

namespace Defeat.Samples.FashionMnist;

/// <summary>What one run of the experiment produced.</summary>
public sealed record ExperimentResults(IReadOnlyList<RobustnessReport> Reports, string PlotPath, string TablePath);

/// <summary>
/// The sample's experiment: zero-shot CLIP, APT-style adversarial prompt tuning, FAP and DEFEAT (with the
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
            Path.Combine(output, "checkpoints"), AutoAttack: settings.AutoAttack), loggers);
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
            using var methods = study.Methods(backbone, classes);
            var reports = study.TrainAndEvaluate(methods, fewShot, testSet, name => new JsonObject
            {
                ["method"] = name,
                ["classes"] = new JsonArray(classes.Select(c => (JsonNode)c!).ToArray()),
            }, progress, ct);
            bool adaptive = settings.Adaptive || settings.AutoAttack; // --autoattack implies --adaptive
            if (adaptive)
                reports.AddRange(methods.Select(m => study.EvaluateAdaptive(m.Name, m.Model, testSet, progress, ct)).ToList());
            string sanity = adaptive ? study.SanityChecks(methods, testSet, ct) : "";
            string scale = RobustnessStudy.CodebookScale(methods.Select(m => (m.Name, m.Model)), testSet);
            string plot = study.WritePlot(Path.Combine(output, "robustness.png"), methods, reports, testSet, progress, ct);
            string table = Path.Combine(output, "results.md");
            AtomicFile.WriteAllText(table, ResultsTable.Markdown(reports) + Environment.NewLine + ResultsTable.MaskingNotes(reports) + scale + sanity);
            return new ExperimentResults(reports, plot, table);
        });
    }
}
