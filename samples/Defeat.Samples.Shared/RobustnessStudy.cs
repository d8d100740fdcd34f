using System.Text.Json.Nodes;
using Defeat.Attacks;
using Defeat.Backbones;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Model;
using Defeat.Quantization;
using Defeat.Shield;
using Defeat.Training;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace Defeat.Samples.Shared;

/// <summary>How the samples train and attack each method: the same protocol for every data set.</summary>
/// <param name="Epochs">Epochs of adversarial prompt tuning.</param>
/// <param name="LearningRate">SGD learning rate.</param>
/// <param name="BatchSize">Training batch size.</param>
/// <param name="TrainEpsilon">Radius of the training attack (PGD, 3 steps of 2*eps/3).</param>
/// <param name="Epsilons">Radii of the table.</param>
/// <param name="PgdSteps">Steps of the evaluation PGD (step eps/4, one random start).</param>
/// <param name="CurveEpsilons">Radii of the robust-accuracy-vs-epsilon curve.</param>
/// <param name="CurveSteps">Step counts of the robust-accuracy-vs-steps curve (at the largest table radius).</param>
/// <param name="Seed">Seed of every random choice.</param>
/// <param name="CheckpointRoot">Folder under which each method's checkpoints go.</param>
/// <param name="EvaluationBatchSize">Images per evaluation batch.</param>
/// <param name="Device">Device batches are moved to; null leaves them where they are.</param>
public sealed record StudySettings(
    int Epochs, double LearningRate, int BatchSize, double TrainEpsilon,
    IReadOnlyList<double> Epsilons, int PgdSteps, IReadOnlyList<double> CurveEpsilons, IReadOnlyList<int> CurveSteps,
    int Seed, string CheckpointRoot, int EvaluationBatchSize = 100, Device? Device = null);

/// <summary>Trains, evaluates and draws curves for the samples' methods (zero-shot, APT-style, DEFEAT).</summary>
public sealed class RobustnessStudy(StudySettings settings, ILoggerFactory loggers)
{
    /// <summary>The official VQ-VAE halves the width (512 -> 256) and keeps 512 codes: the same ratio for any backbone.</summary>
    public static PerturbShieldOptions OfficialShield(IVisionLanguageBackbone backbone, int codebookSize = 512) => new()
    {
        FeatureDim = backbone.FeatureDim,
        HiddenDim = backbone.FeatureDim / 2,
        CodebookSize = codebookSize,
    };

    /// <summary>The official shield with the usual cures for a collapsing codebook: codes start on the data (k-means
    /// on the first batch), follow it by EMA, and unused ones restart on current encoder outputs.</summary>
    public static PerturbShieldOptions AntiCollapseShield(IVisionLanguageBackbone backbone, int seed, int codebookSize = 512)
    {
        var official = OfficialShield(backbone, codebookSize);
        return official with
        {
            Quantizer = new VectorQuantizerOptions
            {
                CodebookSize = official.CodebookSize,
                Dim = official.HiddenDim,
                KMeansInit = true,
                CodebookUpdate = CodebookUpdate.ExponentialMovingAverage,
                DeadCodeThreshold = 0.01,
                Seed = (ulong)seed,
            },
        };
    }

    /// <summary>Trains <paramref name="model"/> with <see cref="DefeatTrainer"/>; checkpoints go to a folder named after the method.</summary>
    public void Train(string name, DefeatModel model, LabeledImages fewShot, JsonObject metadata, IProgress<StageProgress> progress, CancellationToken ct)
    {
        var trainer = new DefeatTrainer(new DefeatTrainerOptions
        {
            Epochs = settings.Epochs,
            WarmupEpochs = Math.Min(1, settings.Epochs - 1),
            LearningRate = settings.LearningRate,
            BatchSize = settings.BatchSize,
            Attack = PgdOptions.DefeatTraining(settings.TrainEpsilon),
            Seed = (ulong)settings.Seed,
            CheckpointDirectory = Path.Combine(settings.CheckpointRoot, Slug(name)),
            Device = settings.Device,
        }, loggers.CreateLogger<DefeatTrainer>());
        trainer.Train(model, fewShot, metadata,
            new SyncProgress<TrainingProgress>(p => progress.Report(new StageProgress($"train {name}", p.Step, p.TotalSteps, $"epoch {p.Epoch}, loss {p.Loss:F3}"))), ct);
    }

    /// <summary>PGD at each radius; DEFEAT is attacked through the fused logits and through each branch.</summary>
    public RobustnessReport Evaluate(string name, DefeatModel model, LabeledImages testSet, IReadOnlyList<double> epsilons, int steps,
        IProgress<StageProgress> progress, CancellationToken ct, string stage = "evaluate")
    {
        var evaluator = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = epsilons,
            BatchSize = settings.EvaluationBatchSize,
            Device = settings.Device,
            AttackFactory = eps => new PgdAttack(PgdOptions.DefeatEvaluation(eps) with { Steps = steps, Seed = (ulong)settings.Seed }),
        }, loggers.CreateLogger<RobustnessEvaluator>());
        return Run(evaluator, name, model, testSet, progress, ct, stage);
    }

    /// <summary>Every attack of <see cref="AdaptiveAttackSuite"/> at the largest radius, scored per sample worst case.</summary>
    public RobustnessReport EvaluateAdaptive(string name, DefeatModel model, LabeledImages testSet, IProgress<StageProgress> progress, CancellationToken ct)
    {
        var evaluator = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = [settings.Epsilons[^1]],
            BatchSize = settings.EvaluationBatchSize,
            Device = settings.Device,
            Attacks = AdaptiveAttackSuite.Attacks(model, new AdaptiveAttackOptions { Steps = settings.PgdSteps, Restarts = 3, Seed = (ulong)settings.Seed }),
        }, loggers.CreateLogger<RobustnessEvaluator>());
        return Run(evaluator, $"{name} [adaptive]", model, testSet, progress, ct, "adaptive");
    }

    /// <summary>Robust accuracy against epsilon; radii already in <paramref name="main"/> are reused, radius 0 is clean accuracy.</summary>
    public Curve EpsilonCurve(string name, DefeatModel model, RobustnessReport main, LabeledImages testSet, IProgress<StageProgress> progress, CancellationToken ct)
    {
        var missing = settings.CurveEpsilons.Where(e => e > 0 && main.ByEpsilon.All(r => r.Epsilon != e)).Distinct().ToList();
        var extra = missing.Count == 0 ? [] : Evaluate(name, model, testSet, missing, settings.PgdSteps, progress, ct, "curve").ByEpsilon;
        var all = main.ByEpsilon.Concat(extra).ToDictionary(r => r.Epsilon, r => r.RobustAccuracy);
        all[0] = main.CleanAccuracy;
        var xs = settings.CurveEpsilons.Distinct().Order().ToList();
        return new Curve(name, xs, xs.Select(e => all[e]).ToList());
    }

    /// <summary>Robust accuracy against PGD steps at the largest table radius; the table's own step count is reused.</summary>
    public Curve StepsCurve(string name, DefeatModel model, RobustnessReport main, LabeledImages testSet, IProgress<StageProgress> progress, CancellationToken ct)
    {
        double eps = settings.Epsilons[^1];
        var points = new SortedDictionary<int, double> { [settings.PgdSteps] = main.ByEpsilon[^1].RobustAccuracy };
        foreach (var steps in settings.CurveSteps.Where(s => s != settings.PgdSteps).Distinct())
            points[steps] = Evaluate(name, model, testSet, [eps], steps, progress, ct, "curve").ByEpsilon[0].RobustAccuracy;
        return new Curve(name, points.Keys.Select(k => (double)k).ToList(), points.Values.ToList());
    }

    /// <summary>
    /// The VQ-VAE encoder's output scale against the codebook's, for each model with a <see cref="PerturbShield"/>:
    /// when the codewords are far smaller than the encoder outputs, every input snaps to the few outermost codes
    /// (codebook collapse). Returns a markdown table (empty when no model has a shield).
    /// </summary>
    public static string CodebookScale(IEnumerable<(string Name, DefeatModel Model)> models, LabeledImages images, int maxImages = 200)
    {
        var lines = new List<string>();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = images.Images.narrow(0, 0, Math.Min(maxImages, images.Count));
        foreach (var (name, model) in models)
        {
            if (model.Shield is not PerturbShield { VqVae.Quantizer: VectorQuantizer quantizer } shield) continue;
            // Backbone, shield and codebook share the model's device.
            using var features = model.Backbone.EncodeImage(x.to(quantizer.Codebook.device));
            var (h, w) = model.Backbone.GridSize;
            var grid = features.GridFeatures.transpose(1, 2).reshape(-1, model.Backbone.FeatureDim, h, w);
            var ze = shield.VqVae.Encode(grid).permute(0, 2, 3, 1).reshape(-1, shield.Options.HiddenDim);
            var codeNorms = quantizer.Codebook.norm(1);
            lines.Add(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"| {name} | {ze.norm(1).mean().item<float>():F3} | {codeNorms.mean().item<float>():F4} | {codeNorms.max().item<float>():F4} |"));
        }
        if (lines.Count == 0) return "";
        return string.Join(Environment.NewLine, new[]
        {
            "", $"Encoder output scale against the codebook's ({x.shape[0]} test images):", "",
            "| method | mean norm of encoder outputs | mean norm of codewords | largest codeword norm |", "|---|---|---|---|",
        }.Concat(lines)) + Environment.NewLine;
    }

    private static string Slug(string name) => new(name.ToLowerInvariant().Select(c => char.IsLetterOrDigit(c) ? c : '-').ToArray());

    private static RobustnessReport Run(RobustnessEvaluator evaluator, string name, DefeatModel model, LabeledImages testSet,
        IProgress<StageProgress> progress, CancellationToken ct, string stage) =>
        evaluator.Evaluate(AdaptiveAttackSuite.Subject(model, name), testSet,
            new SyncProgress<EvaluationProgress>(p => progress.Report(new StageProgress($"{stage} {name}", (int)p.Done, (int)p.Total, p.Stage))), ct);
}
