using Defeat.Validation;
using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>
/// The allowed set of an attack, the epsilon-ball of a norm around the clean images intersected with the
/// [0, 1] pixel box, and the input checks every attack of this folder shares.
/// </summary>
internal static class PerturbationBall
{
    /// <summary>Per-image norm of <paramref name="delta"/> <c>[B, ...]</c>: <c>[B]</c>.</summary>
    public static Tensor Norms(Tensor delta, AttackNorm norm) =>
        norm == AttackNorm.LInf ? delta.flatten(1).abs().amax(new long[] { 1 }) : delta.flatten(1).norm(1);

    /// <summary><paramref name="delta"/> divided by its per-image norm (plus 1e-12, as the reference implementation does).</summary>
    public static Tensor Normalize(Tensor delta, AttackNorm norm) =>
        delta / Norms(delta, norm).Plus(1e-12).reshape(Broadcast(delta.shape[0], delta.dim()));

    /// <summary>Projects <paramref name="x"/> onto the ball around <paramref name="x0"/>, then clamps to [0, 1]
    /// (clamping moves each value toward <paramref name="x0"/>, which is inside the box, so it never leaves the ball).</summary>
    public static Tensor Project(Tensor x, Tensor x0, AttackNorm norm, double epsilon)
    {
        var delta = x - x0;
        if (norm == AttackNorm.LInf)
        {
            var eps = EpsilonIn(epsilon, delta.dtype);
            delta = delta.Clamp(-eps, eps);
        }
        else
        {
            // delta / (|delta| + 1e-12) * min(eps, |delta|), as the reference implementation writes it (APGD's L2
            // trajectories are sensitive enough that another rounding of the same projection moves them by ~1e-7).
            var norms = delta.flatten(1).norm(1).reshape(Broadcast(delta.shape[0], delta.dim()));
            delta = delta / norms.Plus(1e-12) * norms.ClampMax(epsilon);
        }
        return x0.Plus(delta).Clamp(0.0, 1.0);
    }

    /// <summary>
    /// Rounding in <c>x0 + delta</c> can leave a value an ulp outside the ball; this pulls such values toward
    /// <paramref name="x0"/> until the float64 check passes, so the guarantee of <see cref="IAdversarialAttack"/> is exact.
    /// </summary>
    public static Tensor EnforceExactly(Tensor adversarial, Tensor x0, AttackNorm norm, double epsilon, string attack)
    {
        var x = adversarial.Clamp(0.0, 1.0);
        var reference = x0.to_type(ScalarType.Float64);
        for (var pass = 0; pass < 64; pass++)
        {
            var delta = x.to_type(ScalarType.Float64) - reference;
            if (norm == AttackNorm.LInf)
            {
                var outside = delta.abs().Gt(epsilon);
                if (!outside.any().item<bool>()) return x;
                x = where(outside, x.nextafter(x0), x);
            }
            else
            {
                var norms = delta.flatten(1).norm(1);
                var outside = norms.Gt(epsilon);
                if (!outside.any().item<bool>()) return x;
                var shrink = norms.ClampMin(1e-300).RDiv(epsilon).Times(1.0 - 1e-7 * Math.Pow(2, pass)).ClampMax(1.0)
                    .to_type(x.dtype).reshape(Broadcast(x.shape[0], x.dim()));
                var mask = outside.reshape(Broadcast(x.shape[0], x.dim()));
                x = where(mask, x0.Plus((x - x0) * shrink).Clamp(0.0, 1.0), x);
            }
        }
        var worst = Norms(x.to_type(ScalarType.Float64) - reference, norm).max().item<double>();
        throw new InvalidOperationException($"{attack} could not bring its result inside the epsilon-ball (largest deviation {worst:R}, epsilon {epsilon:R}); this is a bug.");
    }

    /// <summary>Whether every image of <paramref name="adversarial"/> lies in [0, 1] and within <paramref name="epsilon"/>
    /// of <paramref name="x0"/> (checked in float64).</summary>
    public static bool Contains(Tensor adversarial, Tensor x0, AttackNorm norm, double epsilon, out double largest)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var delta = adversarial.to_type(ScalarType.Float64) - x0.to_type(ScalarType.Float64);
        largest = delta.shape[0] == 0 ? 0 : Norms(delta, norm).max().item<double>();
        var inBox = adversarial.numel() == 0 || (adversarial.min().item<float>() >= 0 && adversarial.max().item<float>() <= 1);
        return inBox && largest <= epsilon;
    }

    /// <summary>The largest value of <paramref name="dtype"/> not above <paramref name="epsilon"/>: a clamp bound rounded
    /// up could let a perturbation exceed epsilon by an ulp.</summary>
    public static double EpsilonIn(double epsilon, ScalarType dtype)
    {
        switch (dtype)
        {
            case ScalarType.Float32:
            {
                var f = (float)epsilon;
                return f > epsilon ? MathF.BitDecrement(f) : f;
            }
            case ScalarType.Float16:
            {
                var h = (Half)epsilon;
                return (double)h > epsilon ? (double)Half.BitDecrement(h) : (double)h;
            }
            default:
                return epsilon;
        }
    }

    /// <summary><c>[batch, 1, 1, ...]</c> of the given rank, for per-image factors.</summary>
    public static long[] Broadcast(long batch, long rank)
    {
        var shape = new long[rank];
        Array.Fill(shape, 1L);
        shape[0] = batch;
        return shape;
    }

    /// <summary>Requires logits <c>[batch, classes]</c> from the model.</summary>
    public static Tensor CheckLogits(Tensor logits, long batch)
    {
        if (logits is null || logits.dim() != 2 || logits.shape[0] != batch)
            throw new ArgumentException($"The model must return logits [B={batch}, classes], got {(logits is null ? "null" : TensorChecks.Shape(logits))}.", "model");
        return logits;
    }

    /// <summary>The checks of <see cref="IAdversarialAttack"/>: floating-point images <c>[B, ...]</c> in [0, 1], int64 labels <c>[B]</c> on the same device.</summary>
    public static void CheckInputs(Tensor images, Tensor labels)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        if (images.dim() < 2 || !images.is_floating_point())
            throw new ArgumentException($"images must be floating-point [B, C, H, W] pixels in [0, 1], got {images.dtype} {TensorChecks.Shape(images)}.", nameof(images));
        TensorChecks.RequireLabels(labels, images.shape[0], nameof(labels));
        if (labels.device.type != images.device.type)
            throw new ArgumentException($"labels must be on the images' device {images.device}, got a tensor on {labels.device}.", nameof(labels));
        TensorChecks.RequirePixelRange(images, nameof(images));
    }

    /// <summary>Requires labels in <c>[0, classes)</c> once the model's class count is known.</summary>
    public static void CheckLabelRange(Tensor labels, long classes) =>
        TensorChecks.RequireLabels(labels, labels.shape[0], nameof(labels), classes);
}
