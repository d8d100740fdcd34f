using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>The settings of one APGD run, shared by <see cref="ApgdAttack"/> and <see cref="ApgdTargetedAttack"/>.</summary>
internal sealed record ApgdSettings(double Epsilon, AttackNorm Norm, int Iterations, double Rho, double Momentum, bool RandomStart, int EotIterations);

/// <summary>What one APGD run found, per image of its batch.</summary>
/// <param name="Best">The iterate with the highest objective.</param>
/// <param name="BestObjective">That objective <c>[n]</c>.</param>
/// <param name="Fooled">bool <c>[n]</c>: some iterate reached the attack's goal.</param>
/// <param name="Adversarial">For fooled images the last iterate that reached the goal (undefined elsewhere).</param>
internal readonly record struct ApgdOutcome(Tensor Best, Tensor BestObjective, Tensor Fooled, Tensor Adversarial);

/// <summary>
/// One run of Auto-PGD (Croce and Hein, 2020, Algorithm 1) on a batch: gradient ascent with momentum whose
/// step size starts at 2·epsilon and is halved, with a restart from the best point so far, at checkpoints
/// where the search has stalled.
/// </summary>
internal static class ApgdSearch
{
    /// <summary>The checkpoints (iteration counts after which the step size is reviewed) for a budget.</summary>
    public static IReadOnlyList<int> Checkpoints(int iterations)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(iterations);
        // Whole-iteration intervals as the reference implementation rounds the fractions 0.22, 0.03 and 0.06.
        var first = Math.Max((int)(0.22 * iterations), 1);
        var shrink = Math.Max((int)(0.03 * iterations), 1);
        var smallest = Math.Max((int)(0.06 * iterations), 1);
        var list = new List<int>();
        for (int at = first, interval = first; at <= iterations; interval = Math.Max(interval - shrink, smallest), at += interval)
            list.Add(at);
        return list;
    }

    public static void Check(double epsilon, AttackNorm norm, int iterations, int restarts, double rho, double momentum, int eot)
    {
        if (!(epsilon >= 0) || double.IsInfinity(epsilon))
            throw new ArgumentOutOfRangeException("Epsilon", epsilon, $"Epsilon must be a finite number >= 0, got {epsilon}.");
        if (!Enum.IsDefined(norm))
            throw new ArgumentOutOfRangeException("Norm", norm, $"Norm must be LInf or L2, got {norm}.");
        if (iterations < 0)
            throw new ArgumentOutOfRangeException("Iterations", iterations, $"Iterations must be >= 0, got {iterations}.");
        if (restarts < 1)
            throw new ArgumentOutOfRangeException("Restarts", restarts, $"Restarts must be >= 1, got {restarts}.");
        if (!(rho >= 0 && rho <= 1))
            throw new ArgumentOutOfRangeException("Rho", rho, $"Rho must be in [0, 1], got {rho}.");
        if (!(momentum > 0 && momentum <= 1))
            throw new ArgumentOutOfRangeException("Momentum", momentum, $"Momentum must be in (0, 1], got {momentum}.");
        if (eot < 1)
            throw new ArgumentOutOfRangeException("EotIterations", eot, $"EotIterations must be >= 1, got {eot}.");
    }

    /// <summary>Runs APGD on <paramref name="x0"/> <c>[n, ...]</c>.</summary>
    /// <param name="model">Images to logits.</param>
    /// <param name="x0">Clean images of this run.</param>
    /// <param name="objective">Logits <c>[n, classes]</c> to the per-image objective <c>[n]</c> to maximise.</param>
    /// <param name="success">Logits to bool <c>[n]</c>: the attack's goal is reached.</param>
    /// <param name="s">Budget and constants.</param>
    /// <param name="generator">Source of the random start.</param>
    /// <param name="cancellationToken">Checked before every step.</param>
    public static ApgdOutcome Run(Func<Tensor, Tensor> model, Tensor x0, Func<Tensor, Tensor> objective, Func<Tensor, Tensor> success,
        ApgdSettings s, Generator generator, CancellationToken cancellationToken)
    {
        using var outer = NewDisposeScope();
        var n = x0.shape[0];
        var perImage = PerturbationBall.Broadcast(n, x0.dim());

        Tensor x;
        using (no_grad()) x = Start(x0, s, generator);
        var (grad, logits, loss) = Gradient(model, x, objective, s.EotIterations);

        Tensor fooled, adversarial, best, bestGrad, bestLoss, step, previous, lossAtCheckpoint, reducedAtCheckpoint, increases, lastLoss;
        using (no_grad())
        {
            fooled = success(logits).clone();
            adversarial = x.clone();
            best = x.clone();
            bestGrad = grad.clone();
            bestLoss = loss.clone();
            step = ScalarOps.Full(perImage, 2.0 * s.Epsilon, dtype: x0.dtype, device: x0.device);
            previous = x.clone();
            lossAtCheckpoint = loss.clone();
            // No step was halved before the first checkpoint, so the "unchanged step and best loss" rule cannot fire there.
            reducedAtCheckpoint = ones(n, dtype: ScalarType.Bool, device: x0.device);
            increases = zeros(n, dtype: ScalarType.Int64, device: x0.device);
            lastLoss = loss.clone();
        }

        var checkpoints = Checkpoints(s.Iterations);
        int nextCheckpoint = 0, lastCheckpoint = 0;
        for (var i = 0; i < s.Iterations; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            using (no_grad())
            {
                // The first step has no previous step to lean on.
                var a = i == 0 ? 1.0 : s.Momentum;
                var z = PerturbationBall.Project(x.Plus(step * Direction(grad, s.Norm)), x0, s.Norm, s.Epsilon);
                var next = PerturbationBall.Project(x.Plus((z - x).Times(a)).Plus((x - previous).Times(1 - a)), x0, s.Norm, s.Epsilon);
                previous.copy_(x);
                x.copy_(next);
            }

            var (g, l, f) = Gradient(model, x, objective, s.EotIterations);
            using (no_grad())
            {
                grad.copy_(g);
                var reached = success(l);
                fooled.logical_or_(reached);
                adversarial.copy_(where(reached.reshape(perImage), x, adversarial));
                increases.Plus_(f.gt(lastLoss).to_type(ScalarType.Int64));
                lastLoss.copy_(f);
                var improved = f.gt(bestLoss);
                best.copy_(where(improved.reshape(perImage), x, best));
                bestGrad.copy_(where(improved.reshape(perImage), grad, bestGrad));
                bestLoss.copy_(where(improved, f, bestLoss));

                if (nextCheckpoint < checkpoints.Count && i + 1 == checkpoints[nextCheckpoint])
                {
                    var interval = checkpoints[nextCheckpoint] - lastCheckpoint;
                    // Condition 1: too few of the steps since the last checkpoint raised the objective.
                    var oscillating = increases.to_type(ScalarType.Float64).Le(s.Rho * interval);
                    // Condition 2: the step was not halved last time and the best objective has not moved since.
                    var stalled = reducedAtCheckpoint.logical_not().logical_and(lossAtCheckpoint.ge(bestLoss));
                    var halve = oscillating.logical_or(stalled);
                    reducedAtCheckpoint.copy_(halve);
                    lossAtCheckpoint.copy_(bestLoss);
                    var mask = halve.reshape(perImage);
                    step.copy_(where(mask, step.Over(2), step));
                    x.copy_(where(mask, best, x));
                    grad.copy_(where(mask, bestGrad, grad));
                    increases.zero_();
                    lastCheckpoint = checkpoints[nextCheckpoint];
                    nextCheckpoint++;
                }
            }
        }

        return new ApgdOutcome(best.MoveToOuterDisposeScope(), bestLoss.MoveToOuterDisposeScope(),
            fooled.MoveToOuterDisposeScope(), adversarial.MoveToOuterDisposeScope());
    }

    // The reference's start: a random point with norm exactly epsilon (L-inf: uniform noise scaled to max |.| = eps;
    // L2: a Gaussian direction of length eps), clamped to [0, 1].
    private static Tensor Start(Tensor x0, ApgdSettings s, Generator generator)
    {
        if (!s.RandomStart || s.Epsilon == 0) return x0.clone();
        var t = s.Norm == AttackNorm.LInf
            ? rand(x0.shape, dtype: x0.dtype, device: x0.device, generator: generator).Times(2).Minus(1)
            : randn(x0.shape, dtype: x0.dtype, device: x0.device, generator: generator);
        return PerturbationBall.Project(x0.Plus(PerturbationBall.Normalize(t, s.Norm).Times(s.Epsilon)), x0, s.Norm, s.Epsilon);
    }

    private static Tensor Direction(Tensor gradient, AttackNorm norm) =>
        norm == AttackNorm.LInf ? gradient.sign() : PerturbationBall.Normalize(gradient, norm);

    // The input gradient of the summed objective (averaged over EOT draws) and the last draw's logits and objective.
    private static (Tensor Gradient, Tensor Logits, Tensor Objective) Gradient(Func<Tensor, Tensor> model, Tensor x,
        Func<Tensor, Tensor> objective, int draws)
    {
        using var scope = NewDisposeScope();
        using var _ = enable_grad();
        Tensor? sum = null, logits = null, value = null;
        for (var d = 0; d < draws; d++)
        {
            var input = x.detach().requires_grad_(true);
            logits = PerturbationBall.CheckLogits(model(input), x.shape[0]);
            value = objective(logits);
            var g = torch.autograd.grad(new[] { value.sum() }, new[] { input })[0].detach();
            sum = sum is null ? g : sum.Plus(g);
        }
        var mean = draws == 1 ? sum! : sum!.Over(draws);
        return (mean.MoveToOuterDisposeScope(), logits!.detach().MoveToOuterDisposeScope(), value!.detach().MoveToOuterDisposeScope());
    }
}
