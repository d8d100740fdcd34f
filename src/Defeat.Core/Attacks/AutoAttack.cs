using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>
/// AutoAttack (Croce and Hein, ICML 2020), the ensemble robustness claims are checked with (RobustBench's standard):
/// several complementary parameter-free attacks run one after another, each only on the images every earlier
/// attack failed to fool. The robust accuracy is the fraction no attack fooled.
/// </summary>
/// <remarks>
/// <para>Versions (<see cref="AutoAttackOptions.Version"/>): <b>standard</b> runs APGD-CE (<see cref="ApgdAttack"/>),
/// APGD-T (<see cref="ApgdTargetedAttack"/>), FAB-T (<see cref="FabAttack"/>) and Square (<see cref="SquareAttack"/>,
/// gradient-free, so a defence that masks gradients is still caught); <b>rand</b>, for randomised defences, runs
/// APGD-CE and APGD-DLR averaging 20 gradients per step; <b>custom</b> runs your list of named attacks.
/// <see cref="Stages"/> builds the lists.</para>
/// <para>Images the model gets wrong unattacked are not attacked. Each attack runs on the survivors in batches of
/// <see cref="AutoAttackOptions.BatchSize"/>; its output must lie in the ball (checked exactly, in float64), and an image
/// counts as broken when the model misclassifies that output. <see cref="Run(Func{Tensor, Tensor}, Tensor, Tensor, CancellationToken)"/>
/// returns the images and an <see cref="AutoAttackReport"/>; <see cref="Perturb(Func{Tensor, Tensor}, Tensor, Tensor, CancellationToken)"/>
/// returns the images only, so AutoAttack plugs in wherever an <see cref="IAdversarialAttack"/> does.</para>
/// <para>The run also looks for the warning signs the reference implementation checks: outputs that look like
/// probabilities rather than logits, outputs that change between two identical calls (a randomised defence: use the
/// rand version), and Square fooling more than 0.2 % of the images after the gradient-based attacks (gradient masking
/// suspected). They appear in <see cref="AutoAttackReport.Warnings"/> and in the log.</para>
/// </remarks>
public sealed class AutoAttack : IAdversarialAttack
{
    private readonly ILogger _logger;
    private readonly IProgress<AutoAttackProgress>? _progress;

    /// <summary>Creates the attack; options are validated and the attacks of the version built here.</summary>
    /// <param name="options">Options; <see cref="AutoAttackOptions"/> defaults (the standard version) when null.</param>
    /// <param name="logger">Receives the robust accuracy after each attack and the warnings.</param>
    /// <param name="progress">Receives a report after each batch of each attack.</param>
    public AutoAttack(AutoAttackOptions? options = null, ILogger<AutoAttack>? logger = null, IProgress<AutoAttackProgress>? progress = null)
    {
        Options = options ?? new AutoAttackOptions();
        Options.Validate();
        AttackStages = Stages(Options);
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _progress = progress;
    }

    /// <summary>The validated options.</summary>
    public AutoAttackOptions Options { get; }

    /// <summary>The attacks this instance runs, in order.</summary>
    public IReadOnlyList<AutoAttackStage> AttackStages { get; }

    /// <summary>
    /// The attacks of <paramref name="options"/>' version with its radius, norm, seed and budgets:
    /// <list type="bullet">
    /// <item><description>standard: <c>apgd-ce</c> (APGD, cross-entropy, 1 run), <c>apgd-t</c> (APGD-T, 4 classes or more),
    /// <c>fab-t</c> (FAB-T), <c>square</c> (Square, p_init 0.8, schedule not rescaled, as the reference runs it);</description></item>
    /// <item><description>rand: <c>apgd-ce</c> and <c>apgd-dlr</c> (3 classes or more) with <see cref="AutoAttackOptions.EotIterations"/> gradients per step;</description></item>
    /// <item><description>custom: <see cref="AutoAttackOptions.Stages"/>.</description></item>
    /// </list>
    /// Start a custom list from one of these, e.g. <c>AutoAttack.Stages(options).Where(s =&gt; s.Name != "fab-t")</c>.
    /// </summary>
    /// <param name="options">The options; validated here.</param>
    public static IReadOnlyList<AutoAttackStage> Stages(AutoAttackOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var (eps, norm, seed, iterations) = (options.Epsilon, options.Norm, options.Seed, options.Iterations);
        // The stages see the model as a function; AutoAttack itself guards a module's state once for the whole run.
        return options.Version switch
        {
            AutoAttackVersion.Standard =>
            [
                new("apgd-ce", new ApgdAttack(new ApgdOptions { Epsilon = eps, Norm = norm, Iterations = iterations, Restarts = 1, Loss = AttackLoss.CrossEntropy, Seed = seed })),
                new("apgd-t", new ApgdTargetedAttack(new ApgdTargetedOptions { Epsilon = eps, Norm = norm, Iterations = iterations, TargetClasses = options.TargetClasses, Restarts = 1, Seed = seed }), MinimumClasses: 4),
                new("fab-t", new FabAttack(new FabOptions { Epsilon = eps, Norm = norm, Iterations = iterations, TargetClasses = options.TargetClasses, Restarts = 1, Seed = seed })),
                new("square", new SquareAttack(new SquareOptions { Epsilon = eps, Norm = norm, Queries = options.SquareQueries, InitialFraction = 0.8, RescaleSchedule = false, Restarts = 1, Seed = seed })),
            ],
            AutoAttackVersion.Rand =>
            [
                new("apgd-ce", new ApgdAttack(new ApgdOptions { Epsilon = eps, Norm = norm, Iterations = iterations, Restarts = 1, Loss = AttackLoss.CrossEntropy, EotIterations = options.EotIterations, Seed = seed })),
                new("apgd-dlr", new ApgdAttack(new ApgdOptions { Epsilon = eps, Norm = norm, Iterations = iterations, Restarts = 1, Loss = AttackLoss.Dlr, EotIterations = options.EotIterations, Seed = seed }), MinimumClasses: 3),
            ],
            _ => options.Stages!.ToList(),
        };
    }

    /// <summary>Runs the attacks on a classifier module, protecting its state (see <see cref="ModelStateGuard"/>).</summary>
    /// <param name="model">Images to logits <c>[B, classes]</c>.</param>
    /// <param name="images">Clean pixels <c>[B, C, H, W]</c> in [0, 1].</param>
    /// <param name="labels">int64 <c>[B]</c> true classes.</param>
    /// <param name="cancellationToken">Stops the run between steps.</param>
    public AutoAttackResult Run(nn.Module<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var guard = new ModelStateGuard(model, Options.EvalModeDuringAttack);
        return Run(model.call, images, labels, cancellationToken);
    }

    /// <summary>Runs the attacks, each on the images still robust, and reports the robust accuracy after each.</summary>
    /// <param name="model">Images to logits <c>[B, classes]</c>.</param>
    /// <param name="images">Clean pixels <c>[B, C, H, W]</c> in [0, 1]; any number (they are attacked in batches).</param>
    /// <param name="labels">int64 <c>[B]</c> true classes.</param>
    /// <param name="cancellationToken">Stops the run between steps.</param>
    /// <exception cref="InvalidOperationException">When an attack returns images outside the ball.</exception>
    public AutoAttackResult Run(Func<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        PerturbationBall.CheckInputs(images, labels);
        cancellationToken.ThrowIfCancellationRequested();
        var n = images.shape[0];
        var warnings = new List<string>();
        if (n == 0)
        {
            var none = AttackStages.Select(s => new AutoAttackStageReport(s.Name, 0, 0, double.NaN, TimeSpan.Zero)).ToList();
            return new AutoAttackResult(images.detach().clone(), zeros(0, dtype: ScalarType.Bool, device: images.device),
                new AutoAttackReport(Options.Version, Options.Epsilon, Options.Norm, 0, double.NaN, none, double.NaN, warnings));
        }

        using var outer = NewDisposeScope();
        var x0 = images.detach();
        var (robust, classes) = CleanPass(model, x0, labels, warnings, cancellationToken);
        var clean = robust.sum().item<long>() / (double)n;
        var adversarial = x0.clone();
        var reports = new List<AutoAttackStageReport>();

        for (var k = 0; k < AttackStages.Count; k++)
        {
            var stage = AttackStages[k];
            if (classes < stage.MinimumClasses)
            {
                var why = $"needs at least {stage.MinimumClasses} classes, the model has {classes}";
                warnings.Add($"{stage.Name} was skipped: it {why}.");
                _logger.LogWarning("AutoAttack: {Stage} skipped: it {Why}", stage.Name, why);
                reports.Add(new AutoAttackStageReport(stage.Name, 0, 0, robust.sum().item<long>() / (double)n, TimeSpan.Zero, why));
                continue;
            }

            var clock = Stopwatch.StartNew();
            var survivors = robust.nonzero().squeeze(1);
            var attacked = survivors.shape[0];
            long broken = 0;
            for (long start = 0; start < attacked; start += Options.BatchSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var index = survivors.narrow(0, start, Math.Min(Options.BatchSize, attacked - start));
                var x = x0.index_select(0, index);
                var y = labels.index_select(0, index);
                var result = stage.Attack.Perturb(model, x, y, cancellationToken);
                RequireInBall(stage, result, x);
                using (no_grad())
                {
                    var fooled = PerturbationBall.CheckLogits(model(result), x.shape[0]).argmax(1).ne(y);
                    var which = fooled.nonzero().squeeze(1);
                    var hit = index.index_select(0, which);
                    adversarial.index_copy_(0, hit, result.index_select(0, which));
                    robust.IndexFill_(0, hit, false);
                    broken += which.shape[0];
                }
                _progress?.Report(new AutoAttackProgress(stage.Name, k, AttackStages.Count, start + index.shape[0], attacked,
                    robust.sum().item<long>(), n));
            }

            var accuracy = robust.sum().item<long>() / (double)n;
            reports.Add(new AutoAttackStageReport(stage.Name, attacked, broken, accuracy, clock.Elapsed));
            _logger.LogInformation("AutoAttack: robust accuracy after {Stage}: {Accuracy:P2} ({Broken} of {Attacked} broken, {Seconds:0.0} s)",
                stage.Name, accuracy, broken, attacked, clock.Elapsed.TotalSeconds);
        }

        WarnIfSquareFoundMore(reports, n, warnings);
        var final = robust.sum().item<long>() / (double)n;
        var report = new AutoAttackReport(Options.Version, Options.Epsilon, Options.Norm, n, clean, reports, final, warnings);
        _logger.LogInformation("AutoAttack: clean accuracy {Clean:P2}, robust accuracy {Robust:P2}", clean, final);
        return new AutoAttackResult(adversarial.MoveToOuterDisposeScope(), robust.MoveToOuterDisposeScope(), report);
    }

    /// <inheritdoc />
    public Tensor Perturb(nn.Module<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        using var result = Run(model, images, labels, cancellationToken);
        return result.Adversarial.alias();
    }

    /// <inheritdoc />
    public Tensor Perturb(Func<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        using var result = Run(model, images, labels, cancellationToken);
        return result.Adversarial.alias();
    }

    // Clean predictions in batches; which images are right, and the class count. Also the output checks.
    private (Tensor Robust, long Classes) CleanPass(Func<Tensor, Tensor> model, Tensor x0, Tensor labels, List<string> warnings,
        CancellationToken cancellationToken)
    {
        var n = x0.shape[0];
        var robust = zeros(n, dtype: ScalarType.Bool, device: x0.device);
        long classes = 0;
        using var noGrad = no_grad();
        for (long start = 0; start < n; start += Options.BatchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var length = Math.Min(Options.BatchSize, n - start);
            var x = x0.narrow(0, start, length);
            var logits = PerturbationBall.CheckLogits(model(x), length);
            if (start == 0)
            {
                classes = logits.shape[1];
                PerturbationBall.CheckLabelRange(labels, classes);
                CheckOutputs(model, x, logits, warnings);
            }
            else if (logits.shape[1] != classes)
            {
                throw new ArgumentException($"The model returned {logits.shape[1]} classes for images {start}.., {classes} before.", "model");
            }
            robust.narrow(0, start, length).copy_(logits.argmax(1).eq(labels.narrow(0, start, length)));
        }
        return (robust, classes);
    }

    // The reference's checks of the model's output on the first batch.
    private void CheckOutputs(Func<Tensor, Tensor> model, Tensor x, Tensor logits, List<string> warnings)
    {
        const double tolerance = 1e-5;
        var rowSums = logits.sum(1).to_type(ScalarType.Float64);
        if (logits.max().item<float>() < 1 + tolerance && logits.min().item<float>() > -tolerance
            && rowSums.Minus(1).abs().max().item<double>() < tolerance)
            Warn(warnings, "the model's outputs look like probabilities (in [0, 1], rows summing to 1); attacks need logits, so the evaluation may overestimate robustness.");
        if (Options.Version == AutoAttackVersion.Rand) return;
        var again = PerturbationBall.CheckLogits(model(x), x.shape[0]);
        var unit = logits / logits.norm(1, keepdim: true).Plus(1e-10);
        var unitAgain = again / again.norm(1, keepdim: true).Plus(1e-10);
        if ((unit - unitAgain).norm(1).max().item<float>() > 1e-4 || !again.argmax(1).eq(logits.argmax(1)).all().item<bool>())
            Warn(warnings, "the model's outputs changed between two identical calls; for a randomised defence use Version = Rand (expectation over transformation).");
    }

    private void WarnIfSquareFoundMore(IReadOnlyList<AutoAttackStageReport> reports, long n, List<string> warnings)
    {
        for (var k = 1; k < reports.Count; k++)
        {
            if (AttackStages[k].Attack is not SquareAttack || reports[k].Skipped is not null) continue;
            if (!reports.Take(k).Any(r => r.Skipped is null)) continue;
            var share = reports[k].Broken / (double)n;
            if (share > 0.002)
                Warn(warnings, string.Format(CultureInfo.InvariantCulture,
                    "{0} (gradient-free) fooled {1} images ({2:P2}) that the gradient-based attacks before it could not: gradient masking suspected; " +
                    "treat the gradient attacks' numbers with caution and consider an adaptive attack.", reports[k].Name, reports[k].Broken, share));
        }
    }

    private void Warn(List<string> warnings, string message)
    {
        warnings.Add(message);
        _logger.LogWarning("AutoAttack: {Warning}", message);
    }

    private void RequireInBall(AutoAttackStage stage, Tensor result, Tensor x)
    {
        if (result is null || !result.shape.SequenceEqual(x.shape))
            throw new InvalidOperationException($"Attack \"{stage.Name}\" returned {(result is null ? "null" : Defeat.Validation.TensorChecks.Shape(result))} for images {Defeat.Validation.TensorChecks.Shape(x)}; expected the same shape.");
        if (!PerturbationBall.Contains(result, x, Options.Norm, Options.Epsilon, out var largest))
            throw new InvalidOperationException($"Attack \"{stage.Name}\" returned images outside AutoAttack's ball ({Options.Norm}, epsilon {Options.Epsilon:R}) " +
                $"or [0, 1]: largest perturbation {largest:R}. Build it with the same radius and norm.");
    }
}
