using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>
/// Auto-PGD (Croce and Hein, ICML 2020): PGD without a step size to tune. The step starts at 2·epsilon, a
/// momentum of 0.75 smooths the steps, and at checkpoints the step of an image is halved, and its search restarted
/// from its best point so far, when the search has stalled.
/// </summary>
/// <remarks>
/// <para>Checkpoints: after <c>w_1 = 0.22 N</c> iterations, then at intervals that shrink by <c>0.03 N</c> down to
/// <c>0.06 N</c> (the paper's <c>p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)</c>, <c>p_0 = 0</c>,
/// <c>p_1 = 0.22</c>; <see cref="Checkpoints"/> lists them). At a checkpoint an image's step is halved when (1) at most
/// <see cref="ApgdOptions.Rho"/> of the steps since the last checkpoint raised its objective, or (2) its step was not
/// halved at the last checkpoint and its best objective has not risen since.</para>
/// <para>Each restart attacks only the images no earlier restart has fooled, and images already at the goal (misclassified,
/// or classified as their target when targeted) are returned unchanged. Per image the result is the last iterate that fooled the model, or, where none did, the
/// iterate with the highest objective over all restarts. Losses: cross-entropy (APGD-CE), DLR (APGD-DLR), or the
/// margin; targeted with <see cref="ApgdOptions.Targeted"/> (labels are then the targets). APGD-T, which picks its
/// own targets, is <see cref="ApgdTargetedAttack"/>.</para>
/// </remarks>
public sealed class ApgdAttack : IAdversarialAttack
{
    private readonly ILogger _logger;

    /// <summary>Creates the attack.</summary>
    /// <param name="options">Attack options; <see cref="ApgdOptions"/> defaults when null.</param>
    /// <param name="logger">Receives a debug line per restart.</param>
    public ApgdAttack(ApgdOptions? options = null, ILogger<ApgdAttack>? logger = null)
    {
        Options = options ?? new ApgdOptions();
        Options.Validate();
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The validated options.</summary>
    public ApgdOptions Options { get; }

    /// <summary>
    /// The iteration counts after which APGD reviews the step size for a budget of <paramref name="iterations"/>:
    /// the first after <c>max(floor(0.22 N), 1)</c> iterations, each next interval shorter by <c>max(floor(0.03 N), 1)</c>
    /// but never below <c>max(floor(0.06 N), 1)</c>. These are the published fractions rounded to whole iterations as the
    /// reference implementation rounds them; for <c>N = 100</c>: 22, 41, 57, 70, 80, 87, 93, 99.
    /// </summary>
    /// <param name="iterations">The budget N, at least 0.</param>
    public static IReadOnlyList<int> Checkpoints(int iterations) => ApgdSearch.Checkpoints(iterations);

    /// <inheritdoc />
    public Tensor Perturb(nn.Module<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var guard = new ModelStateGuard(model, Options.EvalModeDuringAttack);
        return Perturb(model.call, images, labels, cancellationToken);
    }

    /// <inheritdoc />
    public Tensor Perturb(Func<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        PerturbationBall.CheckInputs(images, labels);
        cancellationToken.ThrowIfCancellationRequested();
        if (images.shape[0] == 0) return images.detach().clone();

        using var outer = NewDisposeScope();
        var x0 = images.detach();
        var settings = new ApgdSettings(Options.Epsilon, Options.Norm, Options.Iterations, Options.Rho, Options.Momentum,
            Options.RandomStart, Options.EotIterations);
        using var generator = new Generator(Options.Seed, images.device);

        Tensor result, fooled, bestObjective;
        using (no_grad())
        {
            var clean = PerturbationBall.CheckLogits(model(x0), x0.shape[0]);
            PerturbationBall.CheckLabelRange(labels, clean.shape[1]);
            // The loss's own class-count check, before any search.
            AttackObjectives.PerSample(clean, labels, Options.Loss, Options.Targeted);
            fooled = AttackObjectives.Success(clean, labels, Options.Targeted);
            result = x0.clone();
            bestObjective = ScalarOps.Full(x0.shape[0], double.NegativeInfinity, dtype: ScalarType.Float64, device: x0.device);
        }

        for (var restart = 0; restart < Options.Restarts; restart++)
        {
            using var scope = NewDisposeScope();
            var active = fooled.logical_not().nonzero().squeeze(1);
            if (active.shape[0] == 0) break;
            var x = x0.index_select(0, active);
            var y = labels.index_select(0, active);
            var run = ApgdSearch.Run(model, x,
                logits => AttackObjectives.PerSample(logits, y, Options.Loss, Options.Targeted),
                logits => AttackObjectives.Success(logits, y, Options.Targeted),
                settings, generator, cancellationToken);
            using (no_grad())
            {
                // A success beats any loss; among failures the highest objective over the restarts is kept.
                var objective = run.BestObjective.to_type(ScalarType.Float64);
                var better = run.Fooled.logical_not().logical_and(objective.gt(bestObjective.index_select(0, active)));
                var candidate = where(run.Fooled.reshape(PerturbationBall.Broadcast(x.shape[0], x.dim())), run.Adversarial,
                    where(better.reshape(PerturbationBall.Broadcast(x.shape[0], x.dim())), run.Best, result.index_select(0, active)));
                result.index_copy_(0, active, candidate);
                bestObjective.index_copy_(0, active, where(better, objective, bestObjective.index_select(0, active)));
                fooled.index_copy_(0, active, run.Fooled);
            }

            if (_logger.IsEnabled(LogLevel.Debug))
                _logger.LogDebug("APGD restart {Restart}/{Restarts}: {Fooled} of {Total} images fooled", restart + 1, Options.Restarts,
                    fooled.sum().item<long>(), fooled.shape[0]);
        }

        using (no_grad())
            return PerturbationBall.EnforceExactly(result, x0, Options.Norm, Options.Epsilon, "APGD").detach().MoveToOuterDisposeScope();
    }
}
