using Defeat.Attacks;
using Defeat.Data;
using Defeat.Quantization;
using Defeat.Validation;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;

namespace Defeat.Evaluation;

/// <summary>
/// Measures clean accuracy, robust accuracy under attack for several radii, their harmonic mean H,
/// and for quantizing defences the codeword flip rate and code usage.
/// </summary>
/// <remarks>
/// Robust accuracy is the per-sample worst case over the subject's attack targets (as AutoAttack
/// scores an ensemble): an image counts only if the prediction stays right under every attack.
/// The accuracy under each single target is reported too, so the gap between the attack on the
/// fused output and the best-aimed attack is visible. With <see cref="RobustnessEvaluatorOptions.Attacks"/> the
/// evaluator runs that list instead (several losses, restarts and targets per radius, e.g.
/// <see cref="AdaptiveAttackSuite"/>), reports each attack by name and takes the worst case over the list.
/// Test images are checked once (finite, in [0, 1]) and the prediction must have one logit per class of the test set.
/// </remarks>
public sealed class RobustnessEvaluator
{
    private readonly ILogger _logger;

    /// <summary>Creates an evaluator; options are validated here.</summary>
    public RobustnessEvaluator(RobustnessEvaluatorOptions? options = null, ILogger<RobustnessEvaluator>? logger = null)
    {
        Options = options ?? new RobustnessEvaluatorOptions();
        Options.Validate();
        _logger = logger ?? (ILogger)NullLogger.Instance;
    }

    /// <summary>The options in force.</summary>
    public RobustnessEvaluatorOptions Options { get; }

    /// <summary>Evaluates <paramref name="subject"/> on <paramref name="testSet"/>.</summary>
    /// <exception cref="OperationCanceledException">When <paramref name="cancellationToken"/> fires.</exception>
    public RobustnessReport Evaluate(EvaluationSubject subject, LabeledImages testSet,
        IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(subject);
        ArgumentNullException.ThrowIfNull(testSet);
        if (testSet.Count == 0)
            throw new ArgumentException("testSet is empty; expected at least one image.", nameof(testSet));
        // LabeledImages guarantees finite pixels in [0, 1] at construction; its tensors may have been written since.
        TensorChecks.RequirePixelRange(testSet.Images, nameof(testSet));
        // Labels too may have been written since; out of range they would be a native error in the attacks' losses.
        TensorChecks.RequireLabels(testSet.Labels, testSet.Count, nameof(testSet), testSet.ClassNames.Count);
        var plan = Plan(subject);

        long total = testSet.Count;
        long cleanCorrect = 0;
        var branchCorrect = subject.Branches.Keys.ToDictionary(k => k, _ => 0L);
        var usage = subject.CodeIndices is null ? null : new long[subject.CodebookSize];
        var targetCorrect = Options.Epsilons.Select(_ => plan.ToDictionary(a => a.Name, _ => 0L)).ToArray();
        var worstCorrect = new long[Options.Epsilons.Count];
        var cleanPerImage = new List<bool>((int)total);
        var robustPerImage = Options.Epsilons.Select(_ => new List<bool>((int)total)).ToArray();
        var flips = new long[Options.Epsilons.Count];
        var flipCodes = new long[Options.Epsilons.Count];
        var byAttack = Options.Epsilons.Select(_ => plan.ToDictionary(a => a.Name, _ => new List<bool>((int)total))).ToArray();
        long codesSeen = 0;
        // Without an explicit list, one AttackFactory attack per radius serves every target (as before the list existed).
        var shared = Options.Attacks is null ? Options.Epsilons.Select(Options.AttackFactory).ToArray() : null;
        var attacks = plan.Select(a => shared ?? Options.Epsilons.Select(a.Factory).ToArray()).ToArray();

        for (long start = 0; start < total; start += Options.BatchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            long end = Math.Min(start + Options.BatchSize, total);
            var x = testSet.Images.narrow(0, start, end - start);
            var y = testSet.Labels.narrow(0, start, end - start);
            if (Options.Device is { } device)
            {
                x = x.to(device);
                y = y.to(device);
            }

            Tensor? cleanCodes = null;
            Tensor cleanRight;
            using (no_grad())
            {
                var logits = subject.Predict(x);
                if (logits.dim() != 2 || logits.shape[0] != x.shape[0] || logits.shape[1] != testSet.ClassNames.Count)
                    throw new ArgumentException($"The subject's prediction must be logits [B={x.shape[0]}, classes={testSet.ClassNames.Count}] " +
                        $"(one per class name of testSet), got {TensorChecks.Shape(logits)}; do the model and the data set have the same classes?", nameof(subject));
                cleanRight = logits.argmax(-1).eq(y);
                cleanCorrect += cleanRight.sum().item<long>();
                cleanPerImage.AddRange(cleanRight.cpu().data<bool>());
                foreach (var (name, branch) in subject.Branches)
                    branchCorrect[name] += Correct(branch(x), y);
                if (subject.CodeIndices is not null)
                {
                    cleanCodes = subject.CodeIndices(x);
                    var counts = cleanCodes.flatten().bincount(null, subject.CodebookSize).data<long>().ToArray();
                    if (counts.Length > usage!.Length)
                        throw new InvalidOperationException($"Code indices reach {counts.Length - 1}; expected below the codebook size {usage.Length}.");
                    for (int k = 0; k < counts.Length; k++) usage[k] += counts[k];
                    codesSeen += cleanCodes.numel();
                }
            }
            progress?.Report(new EvaluationProgress(subject.Name, "clean", end, total));

            for (int e = 0; e < Options.Epsilons.Count; e++)
            {
                // Survivors-only: what the model gets wrong clean is never attacked, and each attack sees what is still standing.
                var survived = Options.SurvivorsOnly ? cleanRight.clone() : ones(y.shape[0], dtype: ScalarType.Bool, device: y.device);
                for (int a = 0; a < plan.Count; a++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var name = plan[a].Name;
                    var attacked = Options.SurvivorsOnly ? survived.nonzero().squeeze(1) : null;
                    Tensor right;
                    if (attacked is not null && attacked.numel() == 0)
                        right = zeros_like(survived);
                    else
                    {
                        var xa = attacked is null ? x : x.index_select(0, attacked);
                        var ya = attacked is null ? y : y.index_select(0, attacked);
                        var adversarial = Attack(attacks[a][e], subject, plan[a], xa, ya, cancellationToken);
                        using (no_grad())
                        {
                            var rightAttacked = subject.Predict(adversarial).argmax(-1).eq(ya);
                            right = attacked is null ? rightAttacked : zeros_like(survived).index_copy(0, attacked, rightAttacked);
                            if (cleanCodes is not null && a == 0)
                            {
                                var codes = subject.CodeIndices!(adversarial);
                                flips[e] += codes.ne(attacked is null ? cleanCodes : cleanCodes.index_select(0, attacked)).sum().item<long>();
                                flipCodes[e] += codes.numel();
                            }
                        }
                    }
                    targetCorrect[e][name] += right.sum().item<long>();
                    survived = survived.logical_and(right);
                    byAttack[e][name].AddRange((Options.SurvivorsOnly ? survived : right).cpu().data<bool>());
                    progress?.Report(new EvaluationProgress(subject.Name, $"eps={Options.Epsilons[e] * 255:0.##}/255 {name}", end, total));
                }
                worstCorrect[e] += survived.sum().item<long>();
                robustPerImage[e].AddRange(survived.cpu().data<bool>());
            }
        }

        double clean = (double)cleanCorrect / total;
        var results = Options.Epsilons.Select((eps, e) =>
        {
            double robust = (double)worstCorrect[e] / total;
            var perAttack = byAttack[e].ToDictionary(kv => kv.Key, kv => (IReadOnlyList<bool>)kv.Value);
            var masking = Masking(plan, perAttack);
            if (masking is { Suspected: true })
                _logger.LogWarning("{Subject}: eps {Eps:0.##}/255: {Verdict}", subject.Name, eps * 255, masking);
            return new EpsilonResult(eps,
                targetCorrect[e].ToDictionary(kv => kv.Key, kv => (double)kv.Value / total),
                robust, RobustnessReport.Harmonic(clean, robust),
                codesSeen == 0 ? null : flipCodes[e] == 0 ? 0 : (double)flips[e] / flipCodes[e], robustPerImage[e], perAttack, masking);
        }).ToList();
        var report = new RobustnessReport(subject.Name, total, clean,
            branchCorrect.ToDictionary(kv => kv.Key, kv => (double)kv.Value / total),
            usage is null ? null : Usage(usage), results, cleanPerImage);
        foreach (var r in results)
            _logger.LogInformation("{Subject}: clean {Clean:P2}, eps {Eps:0.##}/255 robust {Robust:P2}, H {H:P2}",
                subject.Name, clean, r.Epsilon * 255, r.RobustAccuracy, r.HarmonicMean);
        return report;
    }

    // Either the explicit attack list, or AttackFactory on every target (named after the target).
    private IReadOnlyList<NamedAttack> Plan(EvaluationSubject subject)
    {
        if (Options.Attacks is null)
            return subject.AttackTargets.Keys.Select(t => new NamedAttack(t, t, Options.AttackFactory)).ToList();
        foreach (var a in Options.Attacks)
            if (!subject.AttackTargets.ContainsKey(a.Target))
                throw new ArgumentException($"Attack \"{a.Name}\" aims at target \"{a.Target}\", which the subject does not have; " +
                    $"expected one of {string.Join(", ", subject.AttackTargets.Keys.Select(k => $"\"{k}\""))}.", nameof(subject));
        return Options.Attacks;
    }

    private static Tensor Attack(IAdversarialAttack attack, EvaluationSubject subject, NamedAttack named, Tensor x, Tensor y, CancellationToken ct)
    {
        try
        {
            return attack.Perturb(subject.AttackTargets[named.Target], x, y, ct);
        }
        catch (ArgumentException ex) when (ex.ParamName == "model")
        {
            // The attack's "model" is the subject's target: name the argument the caller passed.
            throw new ArgumentException($"The subject's attack target \"{named.Target}\" cannot be attacked by \"{named.Name}\": {ex.Message}", nameof(subject), ex);
        }
    }

    // Gradient-free attacks against the white-box ones, per image. Without SurvivorsOnly each attack saw every image: the
    // worst case over the gradient-free ones against the worst case over the others. With it the outcomes are cumulative,
    // so the gradient-free attacks (one run of them) are compared with the white-box attacks that ran before them, as the
    // reference AutoAttack compares Square with its gradient attacks; the images they could not see count as agreeing.
    private GradientMaskingVerdict? Masking(IReadOnlyList<NamedAttack> plan, IReadOnlyDictionary<string, IReadOnlyList<bool>> perAttack)
    {
        var free = plan.Where(a => a.GradientFree).ToList();
        var whiteBox = plan.Where(a => !a.GradientFree).ToList();
        if (free.Count == 0 || whiteBox.Count == 0) return null;
        var names = free.Select(a => a.Name).ToList();
        if (!Options.SurvivorsOnly)
        {
            bool[] AllOf(IEnumerable<NamedAttack> attacks) =>
                Enumerable.Range(0, perAttack[plan[0].Name].Count).Select(i => attacks.All(a => perAttack[a.Name][i])).ToArray();
            return GradientMaskingCheck.Assess(AllOf(whiteBox), AllOf(free), names);
        }
        var order = plan.Select(a => a.Name).ToList();
        int first = order.IndexOf(names[0]), last = order.IndexOf(names[^1]);
        if (first == 0 || last - first + 1 != free.Count) return null; // nothing white-box before them, or not one run
        return GradientMaskingCheck.Assess(perAttack[plan[first - 1].Name], perAttack[free[^1].Name], names);
    }

    private static long Correct(Tensor logits, Tensor labels) => logits.argmax(-1).eq(labels).sum().item<long>();

    private static CodeUsage Usage(long[] counts)
    {
        if (counts.Sum() == 0) return new CodeUsage(0, 0);
        using var scope = NewDisposeScope();
        var usage = tensor(counts);
        return new CodeUsage((int)CodebookUsage.CodesUsed(usage), CodebookUsage.Perplexity(usage, ScalarType.Float64).item<double>());
    }
}
