using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>
/// APGD-T (Croce and Hein, ICML 2020): <see cref="ApgdAttack"/>'s search on the targeted DLR loss
/// (<see cref="AttackObjectives.TargetedDlr"/>), run once per target class: the second highest class of the clean
/// image, then the third, and so on up to <see cref="ApgdTargetedOptions.TargetClasses"/> (or every other class when
/// there are fewer). Labels are the true classes; success is any misclassification.
/// </summary>
/// <remarks>
/// Each run attacks only the images no earlier run has fooled; images the model already gets wrong are returned
/// unchanged. Targets are ranked once, on the clean images. Per image the result is the last iterate that fooled the
/// model, or, where none did, the iterate with the highest targeted DLR over all runs. The targeted DLR loss needs at
/// least 4 classes.
/// </remarks>
public sealed class ApgdTargetedAttack : IAdversarialAttack
{
    private readonly ILogger _logger;

    /// <summary>Creates the attack.</summary>
    /// <param name="options">Attack options; <see cref="ApgdTargetedOptions"/> defaults when null.</param>
    /// <param name="logger">Receives a debug line per target class.</param>
    public ApgdTargetedAttack(ApgdTargetedOptions? options = null, ILogger<ApgdTargetedAttack>? logger = null)
    {
        Options = options ?? new ApgdTargetedOptions();
        Options.Validate();
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The validated options.</summary>
    public ApgdTargetedOptions Options { get; }

    /// <inheritdoc />
    public Tensor Perturb(nn.Module<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var guard = new ModelStateGuard(model, Options.EvalModeDuringAttack);
        return Perturb(model.call, images, labels, cancellationToken);
    }

    /// <inheritdoc />
    /// <exception cref="ArgumentException">When the model has fewer than 4 classes (the targeted DLR loss needs 4).</exception>
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

        Tensor result, fooled, bestObjective, ranked;
        int targets;
        using (no_grad())
        {
            var clean = PerturbationBall.CheckLogits(model(x0), x0.shape[0]);
            var classes = clean.shape[1];
            if (classes < 4)
                throw new ArgumentException($"APGD-T's targeted DLR loss needs a model with at least 4 classes, got logits with {classes}.", nameof(model));
            PerturbationBall.CheckLabelRange(labels, classes);
            targets = (int)Math.Min(Options.TargetClasses, classes - 1);
            ranked = clean.argsort(1, descending: true);
            fooled = AttackObjectives.Success(clean, labels, targeted: false);
            result = x0.clone();
            bestObjective = ScalarOps.Full(x0.shape[0], double.NegativeInfinity, dtype: ScalarType.Float64, device: x0.device);
        }

        for (var rank = 1; rank <= targets; rank++)
        {
            for (var restart = 0; restart < Options.Restarts; restart++)
            {
                using var scope = NewDisposeScope();
                var active = fooled.logical_not().nonzero().squeeze(1);
                if (active.shape[0] == 0) break;
                var x = x0.index_select(0, active);
                var y = labels.index_select(0, active);
                // Images still standing are classified correctly, so their top class is y and rank >= 1 is another class.
                var t = ranked.index_select(0, active)[.., rank];
                var run = ApgdSearch.Run(model, x,
                    logits => AttackObjectives.TargetedDlr(logits, y, t),
                    logits => AttackObjectives.Success(logits, y, targeted: false),
                    settings, generator, cancellationToken);
                using (no_grad())
                {
                    var shape = PerturbationBall.Broadcast(x.shape[0], x.dim());
                    var objective = run.BestObjective.to_type(ScalarType.Float64);
                    var better = run.Fooled.logical_not().logical_and(objective.gt(bestObjective.index_select(0, active)));
                    var candidate = where(run.Fooled.reshape(shape), run.Adversarial,
                        where(better.reshape(shape), run.Best, result.index_select(0, active)));
                    result.index_copy_(0, active, candidate);
                    bestObjective.index_copy_(0, active, where(better, objective, bestObjective.index_select(0, active)));
                    fooled.index_copy_(0, active, run.Fooled);
                }
            }

            if (_logger.IsEnabled(LogLevel.Debug))
                _logger.LogDebug("APGD-T target rank {Rank}/{Targets}: {Fooled} of {Total} images fooled", rank, targets,
                    fooled.sum().item<long>(), fooled.shape[0]);
        }

        using (no_grad())
            return PerturbationBall.EnforceExactly(result, x0, Options.Norm, Options.Epsilon, "APGD-T").detach().MoveToOuterDisposeScope();
    }
}
