using Defeat.Model;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Defeat.Attacks;
using Defeat.Backbones;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Prompting;
using Defeat.Training;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace Defeat.Samples.Shared.Study;

/// <summary>
/// Runs the (configuration, seed) cells of a study: trains and evaluates each, and writes one JSON file per cell.
/// A cell whose file exists is never recomputed; an interrupted cell resumes training from its last checkpoint and
/// evaluates again from the start. Cells are independent, so <c>shard</c> I of N runs every N-th one and many machines
/// can share one study folder.
/// </summary>
/// <param name="protocol">What every cell shares.</param>
/// <param name="backbone">The frozen backbone.</param>
/// <param name="classNames">Class names of the data set.</param>
/// <param name="fewShot">The training set of a seed: (seed, shots per class) -> images the backbone never saw.</param>
/// <param name="testSet">The fixed test images (see <see cref="StudyProtocol.TestPerClass"/>).</param>
/// <param name="prompts">Prompt-learner options for a seed (hand-written templates of the data set).</param>
/// <param name="folder">The study folder: cells in <c>cells/</c>, training checkpoints in <c>checkpoints/</c>.</param>
/// <param name="loggers">Logging.</param>
public sealed class StudyRunner(
    StudyProtocol protocol, IVisionLanguageBackbone backbone, IReadOnlyList<string> classNames,
    Func<int, int, LabeledImages> fewShot, LabeledImages testSet, Func<int, PromptLearnerOptions> prompts,
    string folder, ILoggerFactory loggers)
{
    private readonly List<(string Configuration, int Seed, string Reason)> _diverged = [];

    /// <summary>The cells whose training diverged in this runner's runs (no file was written for them), with the reason.</summary>
    public IReadOnlyList<(string Configuration, int Seed, string Reason)> Diverged => _diverged;

    /// <summary>The folder the cell files go to.</summary>
    public string CellFolder => Path.Combine(folder, "cells");

    /// <summary>The cells of <paramref name="configurations"/> x <paramref name="seeds"/> that shard
    /// <paramref name="shard"/> of <paramref name="shards"/> owns (1-based), configuration-major.</summary>
    public static IReadOnlyList<(StudyConfiguration Configuration, int Seed)> Plan(
        IReadOnlyList<StudyConfiguration> configurations, IReadOnlyList<int> seeds, int shard = 1, int shards = 1)
    {
        ArgumentNullException.ThrowIfNull(configurations);
        ArgumentNullException.ThrowIfNull(seeds);
        if (shards < 1 || shard < 1 || shard > shards)
            throw new ArgumentOutOfRangeException(nameof(shard), $"{shard}/{shards}", "Expected a shard I/N with 1 <= I <= N.");
        var cells = configurations.SelectMany(c => seeds.Select(s => (c, s))).ToList();
        return cells.Where((_, i) => i % shards == shard - 1).ToList();
    }

    /// <summary>Runs every cell of <paramref name="cells"/> that has no file yet; returns how many it ran.</summary>
    public int Run(IReadOnlyList<(StudyConfiguration Configuration, int Seed)> cells, IProgress<StageProgress> progress, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(cells);
        protocol.Validate();
        var log = loggers.CreateLogger<StudyRunner>();
        int ran = 0;
        for (int i = 0; i < cells.Count; i++)
        {
            var (configuration, seed) = cells[i];
            string path = Path.Combine(CellFolder, StudyCell.FileName(configuration.Name, seed));
            if (File.Exists(path))
            {
                log.LogInformation("{Cell}: done before, skipped", Path.GetFileName(path));
                continue;
            }
            string divergedPath = Path.Combine(CellFolder, DivergedCell.FileName(configuration.Name, seed));
            if (File.Exists(divergedPath))
            {
                log.LogInformation("{Cell}: diverged before, skipped (delete the file to try again)", Path.GetFileName(divergedPath));
                continue;
            }
            ct.ThrowIfCancellationRequested();
            StudyCell cell;
            try
            {
                cell = RunCell(configuration, seed, progress, ct);
            }
            catch (TrainingDivergedException e)
            {
                // A configuration that diverges is a result, not a crash: the other cells still run, and a .diverged file
                // (no cell) lets the summary say which seeds its means leave out. The same seed diverges again, so a rerun
                // skips it.
                log.LogError("{Config} seed {Seed}: {Message}", configuration.Name, seed, e.Message);
                _diverged.Add((configuration.Name, seed, e.Message));
                new DivergedCell(configuration.Name, seed, protocol.Fingerprint(), e.Message).Save(CellFolder);
                continue;
            }
            cell.Save(CellFolder);
            progress.Report(new StageProgress("study", i + 1, cells.Count, $"{configuration.Name} seed {seed} done"));
            log.LogInformation("{Config} seed {Seed}: clean {Clean:P1}, robust {Robust:P1} at {Eps:0.##}/255 (train {Train:F0} s, evaluate {Eval:F0} s)",
                configuration.Name, seed, cell.Clean, cell.ByEpsilon[^1].Robust, cell.ByEpsilon[^1].Epsilon * 255, cell.TrainSeconds, cell.EvaluateSeconds);
            ran++;
        }
        return ran;
    }

    /// <summary>Trains and evaluates one cell (ignores any existing file).</summary>
    public StudyCell RunCell(StudyConfiguration configuration, int seed, IProgress<StageProgress> progress, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        string name = $"{configuration.Name} s{seed}";
        int shots = configuration.Shots ?? protocol.Shots;
        using var train = fewShot(seed, shots);
        var model = Build(configuration, seed);
        using var owned = (IDisposable)model;

        var watch = Stopwatch.StartNew();
        if (configuration.Train)
        {
            int epochs = configuration.Epochs ?? protocol.Epochs;
            var trainer = new DefeatTrainer(new DefeatTrainerOptions
            {
                Epochs = epochs,
                WarmupEpochs = Math.Min(1, epochs - 1),
                LearningRate = configuration.LearningRate ?? protocol.LearningRate,
                BatchSize = protocol.BatchSize,
                Attack = PgdOptions.DefeatTraining(protocol.TrainEpsilon),
                Seed = (ulong)seed,
                CheckpointDirectory = Path.Combine(folder, "checkpoints", $"{configuration.Name}--seed{seed}"),
            }, loggers.CreateLogger<DefeatTrainer>());
            trainer.Train(model, train, new JsonObject { ["configuration"] = configuration.Name, ["protocol"] = protocol.Fingerprint() },
                new SyncProgress<TrainingProgress>(p => progress.Report(new StageProgress($"train {name}", p.Step, p.TotalSteps, $"epoch {p.Epoch}, loss {p.Loss:F3}"))), ct);
        }
        double trainSeconds = watch.Elapsed.TotalSeconds;

        model.SetTraining(false);
        var evaluator = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = protocol.Epsilons,
            BatchSize = protocol.EvaluationBatchSize,
            SurvivorsOnly = protocol.SurvivorsOnly,
            Attacks = Suite(model, seed),
        }, loggers.CreateLogger<RobustnessEvaluator>());
        var report = evaluator.Evaluate(AdaptiveAttackSuite.Subject(model, name), testSet,
            new SyncProgress<EvaluationProgress>(p => progress.Report(new StageProgress($"evaluate {name}", (int)p.Done, (int)p.Total, p.Stage))), ct);

        return new StudyCell(configuration.Name, seed, protocol.Fingerprint(), (int)report.Images, (int)train.Count,
            report.CleanAccuracy, StudyCell.Bits(report.CleanCorrect!), report.BranchAccuracy, report.Codes?.CodesUsed, report.Codes?.Perplexity,
            report.ByEpsilon.Select(r => new StudyEpsilonResult(r.Epsilon, r.RobustAccuracy, r.RobustAccuracyByTarget, r.FlipRate, StudyCell.Bits(r.RobustCorrect!))).ToList(),
            trainSeconds, watch.Elapsed.TotalSeconds - trainSeconds, DateTime.UtcNow);
    }

    /// <summary>The model of a configuration, initialised from <paramref name="seed"/>: a <see cref="DefeatModel"/>, or a
    /// <see cref="FapModel"/> when <see cref="StudyConfiguration.Fap"/> is set (the caller disposes it).</summary>
    /// <exception cref="ArgumentException">A FAP configuration on a backbone that cannot take deep prompts.</exception>
    public ITrainableClassifier Build(StudyConfiguration configuration, int seed)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        manual_seed(seed);
        if (configuration.Fap is { } fap)
            return backbone is IDeepPromptBackbone deep
                ? FapModel.Create(deep, classNames, fap(deep, seed))
                : throw new ArgumentException($"Configuration \"{configuration.Name}\" is FAP, which needs a backbone with deep prompts (IDeepPromptBackbone); got a {backbone.GetType().Name}.", nameof(configuration));
        var shield = configuration.Shield?.Invoke(backbone, seed);
        return DefeatModel.Create(backbone, classNames, configuration.Model with { UseShield = shield is not null }, prompts(seed), shield, configuration.Fusion);
    }

    private IReadOnlyList<NamedAttack> Suite(ITrainableClassifier model, int seed)
    {
        if (protocol.Suite == StudySuite.Full)
            return AdaptiveAttackSuite.Attacks(model, new AdaptiveAttackOptions
            {
                Steps = protocol.PgdSteps, Restarts = protocol.Restarts, Seed = (ulong)seed, SoftQuantizationTemperatures = protocol.SoftQuantizationTemperatures,
                IncludeAutoAttack = protocol.AutoAttack,
            });
        Func<double, IAdversarialAttack> Pgd(AttackLoss loss, ulong offset) => eps => new PgdAttack(PgdOptions.DefeatEvaluation(eps) with
        {
            Steps = protocol.PgdSteps, Loss = loss, Seed = (ulong)seed + offset,
        });
        var suite = protocol.AutoAttack ? AdaptiveAttackSuite.AutoAttackStages(classNames.Count, (ulong)seed).ToList() : [];
        suite.Add(new("pgd-ce/fused", AdaptiveAttackSuite.Fused, Pgd(AttackLoss.CrossEntropy, 0)));
        if (model is DefeatModel { Shield: not null } defeat)
        {
            suite.Add(new("pgd-ce/clean", AdaptiveAttackSuite.Clean, Pgd(AttackLoss.CrossEntropy, 1)));
            suite.Add(new("pgd-ce/robust", AdaptiveAttackSuite.Robust, Pgd(AttackLoss.CrossEntropy, 2)));
            var shield = defeat.Shield;
            suite.Add(new("pgd-softvq/fused", AdaptiveAttackSuite.Fused, eps => new SoftQuantizationAttack(PgdOptions.DefeatEvaluation(eps) with
            {
                Steps = protocol.PgdSteps, Seed = (ulong)seed + 6,
            }, protocol.SoftQuantizationTemperatures, shield.UseSoftQuantization)));
        }
        if (classNames.Count >= 3) suite.Add(new("pgd-dlr/fused", AdaptiveAttackSuite.Fused, Pgd(AttackLoss.Dlr, 4)));
        return suite;
    }
}
