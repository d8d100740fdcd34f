using System.Text.Json.Nodes;
using Defeat.Attacks;
using Defeat.Backbones;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Model;
using Defeat.Prompting;
using Defeat.Quantization;
using Defeat.Shield;
using Defeat.Training;
using Microsoft.Extensions.Logging;
using TorchSharp;
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
/// <param name="AutoAttack">Whether the adaptive evaluation also runs AutoAttack's four attacks (APGD-CE, APGD-T, FAB-T and the
/// gradient-free Square) on the images every earlier attack left standing, which lets the report say whether gradient masking
/// is suspected.</param>
public sealed record StudySettings(
    int Epochs, double LearningRate, int BatchSize, double TrainEpsilon,
    IReadOnlyList<double> Epsilons, int PgdSteps, IReadOnlyList<double> CurveEpsilons, IReadOnlyList<int> CurveSteps,
    int Seed, string CheckpointRoot, int EvaluationBatchSize = 100, Device? Device = null, bool AutoAttack = false);

/// <summary>One method of the study.</summary>
/// <param name="Name">Shown in tables, plots and checkpoint folders.</param>
/// <param name="Model">The model: a <see cref="DefeatModel"/> (zero-shot, APT-style, DEFEAT) or a <see cref="FapModel"/>
/// (the backbone it shares is not its own).</param>
/// <param name="Train">Whether it is trained (zero-shot CLIP is not).</param>
public sealed record StudyMethod(string Name, ITrainableClassifier Model, bool Train)
{
    /// <summary>Whether the method is DEFEAT with its shield (it has the clean and robust branches and a codebook).</summary>
    public bool Shielded => Model is DefeatModel { Shield: not null };
}

/// <summary>The study's methods; disposing the list disposes their models.</summary>
public sealed class StudyMethods : IReadOnlyList<StudyMethod>, IDisposable
{
    private readonly List<StudyMethod> _methods = [];

    /// <inheritdoc/>
    public StudyMethod this[int index] => _methods[index];

    /// <inheritdoc/>
    public int Count => _methods.Count;

    internal void Add(StudyMethod method) => _methods.Add(method);

    /// <inheritdoc/>
    public IEnumerator<StudyMethod> GetEnumerator() => _methods.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Disposes every model.</summary>
    public void Dispose()
    {
        foreach (var method in _methods) (method.Model as IDisposable)?.Dispose();
    }
}

/// <summary>Trains, evaluates and draws curves for the samples' methods (zero-shot, APT-style, FAP, DEFEAT): the same
/// roster and protocol for every data set.</summary>
public sealed class RobustnessStudy(StudySettings settings, ILoggerFactory loggers)
{
    /// <summary>
    /// The roster on one backbone: zero-shot CLIP, APT-style adversarial prompt tuning (no shield, no text
    /// regulariser), FAP (deep multimodal prompts; only on a backbone that takes them), DEFEAT with the official quantizer
    /// and DEFEAT with the anti-collapse quantizer. Each is built
    /// from the study's seed (the same prompt context and shield weights for every data set) and moved to the
    /// study's device when it has one; the backbone must already be there.
    /// </summary>
    /// <param name="backbone">The frozen backbone every method shares.</param>
    /// <param name="classes">Class names in label order.</param>
    /// <param name="codebookSize">Codewords of the DEFEAT variants (512 in DEFEAT).</param>
    public StudyMethods Methods(IVisionLanguageBackbone backbone, IReadOnlyList<string> classes, int codebookSize = 512)
    {
        var methods = new StudyMethods();
        try
        {
            methods.Add(new("zero-shot", Build(backbone, classes, new DefeatModelOptions { UseShield = false, UseLearnedPrompts = false }, null), false));
            methods.Add(new("APT-style", Build(backbone, classes, new DefeatModelOptions { UseShield = false, TextRegularizationWeight = 0 }, null), true));
            if (backbone is IDeepPromptBackbone deep)
                methods.Add(new("FAP", BuildFap(deep, classes), true));
            else
                loggers.CreateLogger<RobustnessStudy>().LogWarning(
                    "FAP left out: the backbone ({Backbone}) cannot take deep prompts (it does not implement IDeepPromptBackbone).", backbone.GetType().Name);
            methods.Add(new("DEFEAT (official)", Build(backbone, classes, new DefeatModelOptions(), OfficialShield(backbone, codebookSize)), true));
            methods.Add(new("DEFEAT (anti-collapse)", Build(backbone, classes, new DefeatModelOptions(), AntiCollapseShield(backbone, settings.Seed, codebookSize)), true));
            return methods;
        }
        catch
        {
            methods.Dispose();
            throw;
        }
    }

    private DefeatModel Build(IVisionLanguageBackbone backbone, IReadOnlyList<string> classes, DefeatModelOptions options, PerturbShieldOptions? shield)
    {
        manual_seed(settings.Seed);
        var prompts = new PromptLearnerOptions { Seed = (ulong)settings.Seed };
        var model = DefeatModel.Create(backbone, classes, options with { UseShield = shield is not null }, prompts, shield);
        // DefeatModel moves only its trainable parts; the backbone was moved by the caller.
        if (settings.Device is { } device) model.to(device);
        return model;
    }

    // FAP as its paper sets it up (2 context tokens from "a photo of a", prompts in the first 9 layers), with the depth
    // capped by the backbone's blocks (the Fashion-MNIST backbone has 3).
    private FapModel BuildFap(IDeepPromptBackbone backbone, IReadOnlyList<string> classes)
    {
        manual_seed(settings.Seed);
        var model = FapModel.Create(backbone, classes, Fap(backbone, settings.Seed));
        if (settings.Device is { } device) model.to(device);
        return model;
    }

    /// <summary>FAP's prompt options for <paramref name="backbone"/>: the paper's, with the prompt depth capped by the
    /// backbone's blocks.</summary>
    public static FapPromptLearnerOptions Fap(IDeepPromptBackbone backbone, int seed) => new()
    {
        Depth = Math.Min(new FapPromptLearnerOptions().Depth, Math.Min(backbone.VisionLayers, backbone.TextLayers)),
        Seed = (ulong)seed,
    };

    /// <summary>Trains each method that trains, then evaluates every method (<see cref="Evaluate"/> at the study's radii).</summary>
    /// <param name="methods">The roster.</param>
    /// <param name="fewShot">The training images.</param>
    /// <param name="testSet">The evaluation images.</param>
    /// <param name="metadata">The checkpoint metadata of a method, by name.</param>
    /// <param name="progress">Receives each stage's progress.</param>
    /// <param name="ct">Stops between steps.</param>
    /// <returns>One report per method, in roster order.</returns>
    public List<RobustnessReport> TrainAndEvaluate(IReadOnlyList<StudyMethod> methods, LabeledImages fewShot, LabeledImages testSet,
        Func<string, JsonObject> metadata, IProgress<StageProgress> progress, CancellationToken ct)
    {
        var log = loggers.CreateLogger<RobustnessStudy>();
        var reports = new List<RobustnessReport>();
        foreach (var (name, model, train) in methods)
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            if (train) Train(name, model, fewShot, metadata(name), progress, ct);
            var trained = watch.Elapsed;
            model.SetTraining(false);
            reports.Add(Evaluate(name, model, testSet, settings.Epsilons, settings.PgdSteps, progress, ct));
            log.LogInformation("{Method}: trained in {Train:F1} s, evaluated in {Eval:F1} s", name, trained.TotalSeconds, (watch.Elapsed - trained).TotalSeconds);
        }
        return reports;
    }

    /// <summary>
    /// Draws robust accuracy against epsilon and against PGD steps for the two baselines and the DEFEAT variant with
    /// the better worst-case robustness at the largest radius, and writes the PNG.
    /// </summary>
    /// <param name="path">The PNG.</param>
    /// <param name="methods">The roster (the two baselines first).</param>
    /// <param name="reports">The roster's reports from <see cref="TrainAndEvaluate"/>, in the same order.</param>
    /// <param name="testSet">The evaluation images.</param>
    /// <param name="progress">Receives each stage's progress.</param>
    /// <param name="ct">Stops between steps.</param>
    /// <returns><paramref name="path"/>.</returns>
    public string WritePlot(string path, IReadOnlyList<StudyMethod> methods, IReadOnlyList<RobustnessReport> reports, LabeledImages testSet,
        IProgress<StageProgress> progress, CancellationToken ct)
    {
        var defeat = methods.Zip(reports).Where(m => m.First.Shielded).MaxBy(m => m.Second.ByEpsilon[^1].RobustAccuracy);
        var curved = new[] { (methods[0], reports[0]), (methods[1], reports[1]), (defeat.First, defeat.Second) };
        var byEpsilon = curved.Select(c => EpsilonCurve(c.Item1.Name, c.Item1.Model, c.Item2, testSet, progress, ct)).ToList();
        var bySteps = curved.Select(c => StepsCurve(c.Item1.Name, c.Item1.Model, c.Item2, testSet, progress, ct)).ToList();
        Plots.Write(path, byEpsilon, bySteps, settings.Epsilons[^1]);
        return path;
    }

    /// <summary>The literature's sanity checks on each method: accuracy under PGD on the fused output at large radii
    /// must fall toward chance, and an unbounded attack (eps = 1) must succeed on (nearly) every image. Returns a
    /// markdown table.</summary>
    /// <param name="methods">The roster.</param>
    /// <param name="testSet">The evaluation images.</param>
    /// <param name="ct">Stops the attacks.</param>
    public string SanityChecks(IEnumerable<StudyMethod> methods, LabeledImages testSet, CancellationToken ct)
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

    /// <summary>The official VQ-VAE halves the width (512 -> 256) and keeps 512 codes: the same ratio for any backbone.</summary>
    public static PerturbShieldOptions OfficialShield(IVisionLanguageBackbone backbone, int codebookSize = 512) => new()
    {
        FeatureDim = backbone.FeatureDim,
        HiddenDim = backbone.FeatureDim / 2,
        CodebookSize = codebookSize,
    };

    /// <summary>
    /// The official shield with the cures for a collapsing codebook that the study found best (its configuration
    /// <c>kmeans-dead</c>, docs/reproduction.md): codes start on the data (k-means on the first batch), unused ones restart
    /// on current encoder outputs, and the codebook is still trained by its gradient. The first wave's preset also moved
    /// the codes by EMA (the study's <c>kmeans-dead-ema</c>); it was below the baselines in the sample's runs, and in the
    /// reference PyTorch run of the study's issue EMA cost 3 points of clean and 0.8 of robust accuracy, so it is not used.
    /// </summary>
    public static PerturbShieldOptions AntiCollapseShield(IVisionLanguageBackbone backbone, int seed, int codebookSize = 512)
        => OfficialShield(backbone, codebookSize).WithQuantizer(q => AntiCollapse(q) with { Seed = (ulong)seed });

    /// <summary>The quantizer changes of <see cref="AntiCollapseShield"/> (and of the study's <c>kmeans-dead</c>): k-means
    /// initialisation on the first batch and dead-code restarts below 0.01 expected uses.</summary>
    public static VectorQuantizerOptions AntiCollapse(VectorQuantizerOptions quantizer)
        => quantizer with { KMeansInit = true, DeadCodeThreshold = 0.01 };

    /// <summary>Trains <paramref name="model"/> with <see cref="DefeatTrainer"/>; checkpoints go to a folder named after the method.</summary>
    public void Train(string name, ITrainableClassifier model, LabeledImages fewShot, JsonObject metadata, IProgress<StageProgress> progress, CancellationToken ct)
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
    public RobustnessReport Evaluate(string name, ITrainableClassifier model, LabeledImages testSet, IReadOnlyList<double> epsilons, int steps,
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

    /// <summary>Every attack of <see cref="AdaptiveAttackSuite"/> at the largest radius, scored per sample worst case; with
    /// <see cref="StudySettings.AutoAttack"/> also AutoAttack's four attacks, every attack then running only on the images
    /// still standing (the worst case is the same quantity; the per-attack figures become cumulative).</summary>
    public RobustnessReport EvaluateAdaptive(string name, ITrainableClassifier model, LabeledImages testSet, IProgress<StageProgress> progress, CancellationToken ct)
    {
        var evaluator = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = [settings.Epsilons[^1]],
            BatchSize = settings.EvaluationBatchSize,
            Device = settings.Device,
            SurvivorsOnly = settings.AutoAttack,
            Attacks = AdaptiveAttackSuite.Attacks(model, new AdaptiveAttackOptions
            {
                Steps = settings.PgdSteps, Restarts = 3, Seed = (ulong)settings.Seed, IncludeAutoAttack = settings.AutoAttack,
            }),
        }, loggers.CreateLogger<RobustnessEvaluator>());
        return Run(evaluator, $"{name} [adaptive]", model, testSet, progress, ct, "adaptive");
    }

    /// <summary>Robust accuracy against epsilon; radii already in <paramref name="main"/> are reused, radius 0 is clean accuracy.</summary>
    public Curve EpsilonCurve(string name, ITrainableClassifier model, RobustnessReport main, LabeledImages testSet, IProgress<StageProgress> progress, CancellationToken ct)
    {
        var missing = settings.CurveEpsilons.Where(e => e > 0 && main.ByEpsilon.All(r => r.Epsilon != e)).Distinct().ToList();
        var extra = missing.Count == 0 ? [] : Evaluate(name, model, testSet, missing, settings.PgdSteps, progress, ct, "curve").ByEpsilon;
        var all = main.ByEpsilon.Concat(extra).ToDictionary(r => r.Epsilon, r => r.RobustAccuracy);
        all[0] = main.CleanAccuracy;
        var xs = settings.CurveEpsilons.Distinct().Order().ToList();
        return new Curve(name, xs, xs.Select(e => all[e]).ToList());
    }

    /// <summary>Robust accuracy against PGD steps at the largest table radius; the table's own step count is reused.</summary>
    public Curve StepsCurve(string name, ITrainableClassifier model, RobustnessReport main, LabeledImages testSet, IProgress<StageProgress> progress, CancellationToken ct)
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
    public static string CodebookScale(IEnumerable<(string Name, ITrainableClassifier Model)> models, LabeledImages images, int maxImages = 200)
    {
        var lines = new List<string>();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = images.Images.narrow(0, 0, Math.Min(maxImages, images.Count));
        foreach (var (name, model) in models)
        {
            if (model is not DefeatModel { Shield: PerturbShield { VqVae.Quantizer: VectorQuantizer quantizer } shield } defeat) continue;
            // Backbone, shield and codebook share the model's device.
            using var features = defeat.Backbone.EncodeImage(x.to(quantizer.Codebook.device));
            var (h, w) = defeat.Backbone.GridSize;
            var grid = features.GridFeatures.transpose(1, 2).reshape(-1, defeat.Backbone.FeatureDim, h, w);
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

    private static RobustnessReport Run(RobustnessEvaluator evaluator, string name, ITrainableClassifier model, LabeledImages testSet,
        IProgress<StageProgress> progress, CancellationToken ct, string stage) =>
        evaluator.Evaluate(AdaptiveAttackSuite.Subject(model, name), testSet,
            new SyncProgress<EvaluationProgress>(p => progress.Report(new StageProgress($"{stage} {name}", (int)p.Done, (int)p.Total, p.Stage))), ct);
}
