using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Defeat.Validation;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>
/// Projected gradient descent (Madry et al., 2018) in pixel space: repeated ascent steps on the
/// attack objective, each followed by projection onto the epsilon-ball around the clean image and
/// onto [0, 1].
/// </summary>
/// <remarks>
/// <para>Per step: <c>x &lt;- clamp(x0 + P_ball(x + a * s(grad) - x0), 0, 1)</c> where <c>s</c> is the sign
/// (L-inf) or the per-image unit vector (L2). Clamping after the ball projection can only shrink the
/// perturbation, so the result stays in both sets; a final pass nudges any value that floating-point
/// rounding left an ulp outside the ball (checked in float64), so the guarantee is exact.</para>
/// <para>Input gradients come from <c>torch.autograd.grad</c>, never from <c>backward()</c>, so the model's
/// parameter <c>.grad</c> tensors are untouched; with a module the parameters are also frozen and (by
/// default) eval mode is set for the duration of the attack, and every flag is restored afterwards.</para>
/// <para>With several restarts, each sample keeps its worst case: a successful restart over an unsuccessful
/// one, then the one with the highest objective.</para>
/// </remarks>
public sealed class PgdAttack : IAdversarialAttack
{
    private readonly ILogger _logger;
    private readonly IProgress<PgdProgress>? _progress;

    /// <summary>Creates the attack.</summary>
    /// <param name="options">Attack options; <see cref="PgdOptions"/> defaults when null.</param>
    /// <param name="logger">Receives a debug line per restart.</param>
    /// <param name="progress">Receives a report after every gradient step.</param>
    public PgdAttack(PgdOptions? options = null, ILogger<PgdAttack>? logger = null, IProgress<PgdProgress>? progress = null)
    {
        _progress = progress;
        Options = options ?? new PgdOptions();
        Options.Validate();
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The validated options.</summary>
    public PgdOptions Options { get; }

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
        CheckInputs(images, labels);
        cancellationToken.ThrowIfCancellationRequested();
        // An empty batch has nothing to attack: the result is an empty copy (the model is never called).
        if (images.shape[0] == 0) return images.detach().clone();

        using var outer = NewDisposeScope();
        var x0 = images.detach();
        using var generator = new Generator(Options.Seed, images.device);

        Tensor? best = null, bestSuccess = null, bestObjective = null;
        // The class count is known only from the model's first logits: the label range is checked there, once.
        var labelsChecked = false;
        for (var restart = 0; restart < Options.Restarts; restart++)
        {
            var adv = Start(x0, generator);
            for (var step = 0; step < Options.Steps; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var gradient = InputGradient(model, adv, labels, ref labelsChecked);
                using (no_grad())
                {
                    Step(adv, gradient, x0);
                }
                _progress?.Report(new PgdProgress(restart, step + 1, Options.Steps, Options.Restarts));
            }

            // With a single restart there is nothing to choose between: its result is the answer, and the
            // forward pass that would score it is skipped (unless the debug log wants its success rate).
            // With no steps the scoring is the one place the labels meet the model's classes (their range check), so it stays.
            if (Options.Restarts == 1 && Options.Steps > 0 && !_logger.IsEnabled(LogLevel.Debug))
            {
                best = adv;
                continue;
            }

            using (no_grad())
            {
                var logits = CheckLogits(model(adv), labels, ref labelsChecked);
                var objective = AttackObjectives.Compute(logits, labels, Options.Loss, Options.Targeted).detach();
                var success = AttackObjectives.Succeeded(logits, labels, Options.Targeted);
                if (best is null)
                {
                    (best, bestSuccess, bestObjective) = (adv, success, objective);
                }
                else
                {
                    // A success beats a failure; between equals the higher objective wins.
                    var better = success.logical_and(bestSuccess!.logical_not())
                        .logical_or(success.eq(bestSuccess!).logical_and(objective.gt(bestObjective!)));
                    var mask = better.reshape(ShapeForBroadcast(better.shape[0], adv.dim()));
                    best = where(mask, adv, best);
                    bestSuccess = where(better, success, bestSuccess!);
                    bestObjective = where(better, objective, bestObjective!);
                }

                if (_logger.IsEnabled(LogLevel.Debug))
                    _logger.LogDebug("PGD restart {Restart}/{Restarts}: success rate {Rate:P1}", restart + 1, Options.Restarts,
                        bestSuccess!.to_type(ScalarType.Float32).mean().item<float>());
            }
        }

        using (no_grad())
        {
            return EnforceExactly(best!, x0).detach().MoveToOuterDisposeScope();
        }
    }

    private Tensor Start(Tensor x0, Generator generator)
    {
        using var _ = no_grad();
        if (!Options.RandomStart || Options.Epsilon == 0) return x0.clone();
        var eps = Options.Epsilon;
        if (Options.Norm == AttackNorm.LInf)
        {
            var uniform = rand(x0.shape, dtype: x0.dtype, device: x0.device, generator: generator);
            return Project(x0.Plus(uniform.Times(2).Minus(1).Times(eps)), x0);
        }

        // Uniform in the L2 ball: a Gaussian direction and a radius eps * U^(1/d).
        var batch = x0.shape[0];
        var dims = x0.numel() / Math.Max(batch, 1);
        var direction = randn(x0.shape, dtype: x0.dtype, device: x0.device, generator: generator);
        var norms = direction.flatten(1).norm(1).ClampMin(1e-12).reshape(ShapeForBroadcast(batch, x0.dim()));
        var radius = rand(ShapeForBroadcast(batch, x0.dim()), dtype: x0.dtype, device: x0.device, generator: generator)
            .Pow(1.0 / dims).Times(eps);
        return Project(x0.Plus(direction / norms * radius), x0);
    }

    private Tensor InputGradient(Func<Tensor, Tensor> model, Tensor adv, Tensor labels, ref bool labelsChecked)
    {
        using var _ = enable_grad();
        var input = adv.detach().requires_grad_(true);
        var logits = CheckLogits(model(input), labels, ref labelsChecked);
        // libtorch's autograd.grad aborts the process (not a catchable error) on an output without a graph, and on an
        // input the graph does not reach unless allow_unused is set: both are checked here instead.
        TensorChecks.RequireDifferentiable(logits, "model", "the images");
        // The batch sum keeps each sample's gradient independent of the batch size.
        var objective = AttackObjectives.Compute(logits, labels, Options.Loss, Options.Targeted).sum();
        var gradient = torch.autograd.grad(new[] { objective }, new[] { input }, allow_unused: true)[0];
        if (gradient.IsInvalid)
            throw new ArgumentException($"model's logits {TensorChecks.Shape(logits)} require grad but do not depend on the images " +
                "(no gradient reaches them); expected a differentiable function of the images.", "model");
        return gradient.detach();
    }

    // adv <- Project(adv + StepSize * Direction(gradient), x0). For L-inf the same operations in the same order, in
    // place on adv (the sign is a new tensor: autograd may hand back an expanded view that cannot be written), so the
    // values are those of the out-of-place form with one temporary instead of seven.
    private void Step(Tensor adv, Tensor gradient, Tensor x0)
    {
        if (Options.Norm != AttackNorm.LInf)
        {
            adv.copy_(Project(adv.Plus(Direction(gradient).Times(Options.StepSize)), x0));
            return;
        }
        var eps = EpsilonIn(adv.dtype);
        adv.Plus_(gradient.sign().Times_(Options.StepSize)).sub_(x0).Clamp_(-eps, eps).Plus_(x0).Clamp_(0.0, 1.0);
    }

    private Tensor Direction(Tensor gradient)
    {
        if (Options.Norm == AttackNorm.LInf) return gradient.sign();
        var norms = gradient.flatten(1).norm(1).reshape(ShapeForBroadcast(gradient.shape[0], gradient.dim()));
        // A zero gradient gives no step rather than NaN.
        return gradient / norms.ClampMin(1e-12);
    }

    // Ball first, then the pixel range: clamping to [0,1] moves each coordinate toward x0 (which is
    // inside [0,1]), so it never leaves the ball.
    private Tensor Project(Tensor x, Tensor x0)
    {
        var delta = x - x0;
        if (Options.Norm == AttackNorm.LInf)
        {
            var eps = EpsilonIn(delta.dtype);
            delta = delta.Clamp(-eps, eps);
        }
        else
        {
            var norms = delta.flatten(1).norm(1).reshape(ShapeForBroadcast(delta.shape[0], delta.dim()));
            var factor = norms.ClampMin(1e-30).RDiv(Options.Epsilon).ClampMax(1.0);
            delta = delta * factor;
        }
        return x0.Plus(delta).Clamp(0.0, 1.0);
    }

    // Rounding in x0 + delta can leave a value an ulp outside the ball; pull such values toward x0
    // until the float64 check passes (monotone rounding then makes the native-dtype check pass too).
    private Tensor EnforceExactly(Tensor adv, Tensor x0)
    {
        var x = adv.Clamp(0.0, 1.0);
        var reference = x0.to_type(ScalarType.Float64);
        for (var pass = 0; pass < 64; pass++)
        {
            var delta = x.to_type(ScalarType.Float64) - reference;
            if (Options.Norm == AttackNorm.LInf)
            {
                var outside = delta.abs().Gt(Options.Epsilon);
                if (!outside.any().item<bool>()) return x;
                x = where(outside, x.nextafter(x0), x);
            }
            else
            {
                var norms = delta.flatten(1).norm(1);
                var outside = norms.Gt(Options.Epsilon);
                if (!outside.any().item<bool>()) return x;
                var shrink = norms.ClampMin(1e-300).RDiv(Options.Epsilon).Times(1.0 - 1e-7 * Math.Pow(2, pass)).ClampMax(1.0)
                    .to_type(x.dtype).reshape(ShapeForBroadcast(x.shape[0], x.dim()));
                var mask = outside.reshape(ShapeForBroadcast(x.shape[0], x.dim()));
                x = where(mask, x0.Plus((x - x0) * shrink).Clamp(0.0, 1.0), x);
            }
        }
        var worst = (x.to_type(ScalarType.Float64) - reference).abs().max().item<double>();
        throw new InvalidOperationException($"PGD could not bring the result inside the epsilon-ball (largest deviation {worst:R}, epsilon {Options.Epsilon:R}); this is a bug.");
    }

    // The largest value of the tensor's dtype not above epsilon: a clamp bound rounded up to the
    // nearest float could let a perturbation exceed epsilon by an ulp.
    private double EpsilonIn(ScalarType dtype)
    {
        var eps = Options.Epsilon;
        switch (dtype)
        {
            case ScalarType.Float32:
            {
                var f = (float)eps;
                return f > eps ? MathF.BitDecrement(f) : f;
            }
            case ScalarType.Float16:
            {
                var h = (Half)eps;
                return (double)h > eps ? (double)Half.BitDecrement(h) : (double)h;
            }
            default:
                return eps;
        }
    }

    private static long[] ShapeForBroadcast(long batch, long rank)
    {
        var shape = new long[rank];
        Array.Fill(shape, 1L);
        shape[0] = batch;
        return shape;
    }

    private static Tensor CheckLogits(Tensor logits, Tensor labels, ref bool labelsChecked)
    {
        long batch = labels.shape[0];
        TensorChecks.Require(logits, logits.dim() == 2 && logits.shape[0] == batch, "model", $"a function returning logits [B={batch}, classes]");
        if (!labelsChecked)
        {
            TensorChecks.RequireLabels(labels, batch, nameof(labels), logits.shape[1]);
            labelsChecked = true;
        }
        return logits;
    }

    private static void CheckInputs(Tensor images, Tensor labels)
    {
        ArgumentNullException.ThrowIfNull(images);
        TensorChecks.Require(images, images.dim() >= 2 && images.is_floating_point(), nameof(images), "floating-point [B, C, H, W] pixels in [0, 1]");
        TensorChecks.RequireLabels(labels, images.shape[0], nameof(labels));
        TensorChecks.RequireDevice(labels, images.device, nameof(labels), "the images");
        TensorChecks.RequirePixelRange(images, nameof(images));
    }
}
