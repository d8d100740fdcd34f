using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>
/// Targeted FAB, the fast adaptive boundary attack (Croce and Hein, ICML 2020), as AutoAttack's FAB-T: a
/// minimum-norm attack that repeatedly linearises the boundary between the true class and a target class and
/// steps onto it, so it needs no step size and does not depend on the scale of the loss.
/// </summary>
/// <remarks>
/// <para>One step at the iterate <c>x</c>: with <c>f = z_t - z_y</c> and its input gradient <c>g</c>, the boundary
/// <c>f(x) + g · (z - x) = 0</c> is a hyperplane; <c>d1</c> and <c>d2</c> are the smallest moves (in the attack's norm,
/// staying in [0, 1]) that take <c>x</c> and the clean image <c>x0</c> onto it. The next iterate is
/// <c>(1 - α)(x + η d1) + α (x0 + η d2)</c> clamped to [0, 1], with <c>α = min(|d1| / (|d1| + |d2|), α_max)</c>: a bias
/// toward points close to <c>x0</c>, and an overshoot <c>η</c>. When the iterate is misclassified it is recorded if
/// closer to <c>x0</c> than the best so far, then pulled back to <c>x0 + β (x - x0)</c>.</para>
/// <para>Targets are the second, third, ... highest classes of the clean image, up to
/// <see cref="FabOptions.TargetClasses"/>; each run attacks only the images still not fooled. An image counts as fooled
/// only if the smallest adversarial found lies within <see cref="FabOptions.Epsilon"/>; the result is that minimal
/// adversarial image, and the clean image wherever none was found within the ball (also for images the model already
/// gets wrong). Labels are the true classes.</para>
/// </remarks>
public sealed class FabAttack : IAdversarialAttack
{
    private readonly ILogger _logger;

    /// <summary>Creates the attack.</summary>
    /// <param name="options">Attack options; <see cref="FabOptions"/> defaults when null.</param>
    /// <param name="logger">Receives a debug line per target class.</param>
    public FabAttack(FabOptions? options = null, ILogger<FabAttack>? logger = null)
    {
        Options = options ?? new FabOptions();
        Options.Validate();
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The validated options.</summary>
    public FabOptions Options { get; }

    /// <inheritdoc />
    public Tensor Perturb(nn.Module<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var guard = new ModelStateGuard(model, Options.EvalModeDuringAttack);
        return Perturb(model.call, images, labels, cancellationToken);
    }

    /// <inheritdoc />
    /// <exception cref="ArgumentException">When the model has a single class (there is no target).</exception>
    public Tensor Perturb(Func<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        PerturbationBall.CheckInputs(images, labels);
        cancellationToken.ThrowIfCancellationRequested();
        if (images.shape[0] == 0) return images.detach().clone();

        using var outer = NewDisposeScope();
        var x0 = images.detach();
        using var generator = new Generator(Options.Seed, images.device);

        Tensor result, fooled, ranked;
        int targets;
        using (no_grad())
        {
            var clean = PerturbationBall.CheckLogits(model(x0), x0.shape[0]);
            var classes = clean.shape[1];
            if (classes < 2)
                throw new ArgumentException($"FAB-T needs a model with at least 2 classes (a target other than the true class), got logits with {classes}.", nameof(model));
            PerturbationBall.CheckLabelRange(labels, classes);
            targets = (int)Math.Min(Options.TargetClasses, classes - 1);
            ranked = clean.argsort(1, descending: true);
            fooled = AttackObjectives.Success(clean, labels, targeted: false);
            result = x0.clone();
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
                // Images still standing are classified correctly, so rank >= 1 is a class other than y.
                var t = ranked.index_select(0, active)[.., rank];
                var (best, bestNorm) = Run(model, x, y, t, randomStart: restart > 0, generator, cancellationToken);
                using (no_grad())
                {
                    // Within the ball and (checked again, as the reference does) misclassified.
                    var accept = bestNorm.Le(Options.Epsilon)
                        .logical_and(PerturbationBall.CheckLogits(model(best), best.shape[0]).argmax(1).ne(y));
                    var shape = PerturbationBall.Broadcast(x.shape[0], x.dim());
                    result.index_copy_(0, active, where(accept.reshape(shape), best, x));
                    fooled.index_copy_(0, active, accept);
                }
            }

            if (_logger.IsEnabled(LogLevel.Debug))
                _logger.LogDebug("FAB-T target rank {Rank}/{Targets}: {Fooled} of {Total} images fooled within epsilon", rank, targets,
                    fooled.sum().item<long>(), fooled.shape[0]);
        }

        using (no_grad())
            return PerturbationBall.EnforceExactly(result, x0, Options.Norm, Options.Epsilon, "FAB").detach().MoveToOuterDisposeScope();
    }

    // One FAB run toward targets t: the closest misclassified iterate per image and its norm (+inf where none).
    private (Tensor Best, Tensor BestNorm) Run(Func<Tensor, Tensor> model, Tensor x0, Tensor y, Tensor t, bool randomStart,
        Generator generator, CancellationToken cancellationToken)
    {
        using var outer = NewDisposeScope();
        var m = x0.shape[0];
        var shape = PerturbationBall.Broadcast(m, x0.dim());
        var flat0 = x0.flatten(1);
        Tensor x1, best, bestNorm;
        using (no_grad())
        {
            x1 = randomStart ? RandomStart(x0, generator) : x0.clone();
            best = x0.clone();
            bestNorm = ScalarOps.Full(m, double.PositiveInfinity, dtype: ScalarType.Float64, device: x0.device);
        }

        for (var i = 0; i < Options.Iterations; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var (difference, gradient) = TargetGradient(model, x1, y, t);
            using (no_grad())
            {
                // The linearised boundary w · z = b with w = grad(z_t - z_y), b = w · x1 - (z_t - z_y)(x1).
                var w = gradient.flatten(1);
                var b = (w * x1.flatten(1)).sum(1) - difference;
                var moves = FabProjection.Project(cat(new[] { x1.flatten(1), flat0 }), cat(new[] { w, w }), cat(new[] { b, b }), Options.Norm);
                var d1 = moves.narrow(0, 0, m).reshape(x0.shape);
                var d2 = moves.narrow(0, m, m).reshape(x0.shape);
                var a1 = PerturbationBall.Norms(d1, Options.Norm).ClampMin(1e-8);
                var a2 = PerturbationBall.Norms(d2, Options.Norm).ClampMin(1e-8);
                var alpha = (a1 / a1.Plus(a2)).Clamp(0.0, Options.AlphaMax).reshape(shape);
                var next = (x1.Plus(d1.Times(Options.Eta)) * alpha.RSub(1)).Plus(x0.Plus(d2.Times(Options.Eta)) * alpha).Clamp(0.0, 1.0);

                var adversarial = PerturbationBall.CheckLogits(model(next), m).argmax(1).ne(y);
                var norm = PerturbationBall.Norms(next.to_type(ScalarType.Float64) - x0.to_type(ScalarType.Float64), Options.Norm);
                var closer = adversarial.logical_and(norm.lt(bestNorm));
                best.copy_(where(closer.reshape(shape), next, best));
                bestNorm.copy_(where(closer, norm, bestNorm));
                // Backward step: from a success, move back toward the clean image.
                x1.copy_(where(adversarial.reshape(shape), x0.Plus((next - x0).Times(Options.Beta)), next));
            }
        }

        return (best.MoveToOuterDisposeScope(), bestNorm.MoveToOuterDisposeScope());
    }

    // The reference's random start: a random direction of norm eps/2, clamped to [0, 1].
    private Tensor RandomStart(Tensor x0, Generator generator)
    {
        var noise = Options.Norm == AttackNorm.LInf
            ? rand(x0.shape, dtype: x0.dtype, device: x0.device, generator: generator).Times(2).Minus(1)
            : randn(x0.shape, dtype: x0.dtype, device: x0.device, generator: generator);
        return x0.Plus(PerturbationBall.Normalize(noise, Options.Norm).Times(0.5 * Options.Epsilon)).Clamp(0.0, 1.0);
    }

    // z_t - z_y per image and the input gradient of its sum.
    private static (Tensor Difference, Tensor Gradient) TargetGradient(Func<Tensor, Tensor> model, Tensor x, Tensor y, Tensor t)
    {
        using var scope = NewDisposeScope();
        using var _ = enable_grad();
        var input = x.detach().requires_grad_(true);
        var logits = PerturbationBall.CheckLogits(model(input), x.shape[0]);
        var difference = logits.gather(1, t.unsqueeze(1)).squeeze(1) - logits.gather(1, y.unsqueeze(1)).squeeze(1);
        var gradient = torch.autograd.grad(new[] { difference.sum() }, new[] { input })[0].detach();
        return (difference.detach().MoveToOuterDisposeScope(), gradient.MoveToOuterDisposeScope());
    }
}
