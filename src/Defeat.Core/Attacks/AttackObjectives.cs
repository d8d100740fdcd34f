using Defeat.Validation;
using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>Per-sample attack objectives and success tests shared by attacks and evaluators.</summary>
public static class AttackObjectives
{
    /// <summary>
    /// The objective an attack maximises, one value per sample: <c>[B]</c>. See <see cref="AttackLoss"/>
    /// for each definition.
    /// </summary>
    /// <param name="logits">Classifier output <c>[B, classes]</c>.</param>
    /// <param name="labels">int64 <c>[B]</c>: true classes, or target classes when <paramref name="targeted"/>.</param>
    /// <param name="loss">Which objective.</param>
    /// <param name="targeted">Whether <paramref name="labels"/> are targets.</param>
    /// <exception cref="ArgumentException">The shapes do not match, or a label is outside <c>[0, classes)</c> (one reduction).</exception>
    public static Tensor PerSample(Tensor logits, Tensor labels, AttackLoss loss, bool targeted)
    {
        CheckLabels(logits, labels);
        return Compute(logits, labels, loss, targeted);
    }

    // Shapes and the label range are checked once per public call: an attack calls this at every step.
    internal static Tensor Compute(Tensor logits, Tensor labels, AttackLoss loss, bool targeted)
    {
        var classes = logits.shape[1];
        // The margin compares with the best other class (DLR checks its own minimum below); with a single class there is none (max over nothing is -inf and its gradient NaN).
        if (loss == AttackLoss.Margin && classes < 2)
            throw new ArgumentException($"The {loss} loss needs at least 2 classes, got logits with {classes}.", nameof(logits));
        switch (loss)
        {
            case AttackLoss.CrossEntropy:
            {
                var ce = nn.functional.cross_entropy(logits, labels, reduction: nn.Reduction.None);
                return targeted ? -ce : ce;
            }
            case AttackLoss.Margin:
            {
                var margin = Margin(logits, labels);
                return targeted ? margin : -margin;
            }
            case AttackLoss.Dlr:
            {
                var needed = targeted ? 4 : 3;
                if (classes < needed)
                    throw new ArgumentException($"The DLR loss needs at least {needed} classes{(targeted ? " when targeted" : "")}, got logits with {classes}.", nameof(logits));
                var sorted = logits.sort(dim: 1, descending: true).Values;
                var scale = targeted
                    ? sorted[.., 0] - sorted[.., 2].Plus(sorted[.., 3]).Over(2)
                    : sorted[.., 0] - sorted[.., 2];
                var margin = Margin(logits, labels);
                return (targeted ? margin : -margin) / scale.Plus(1e-12);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(loss), loss, $"Unknown attack loss {loss}.");
        }
    }

    /// <summary>
    /// The targeted DLR loss of APGD-T (Croce and Hein, 2020), one value per sample <c>[B]</c>:
    /// <c>(z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)</c> where <c>y</c> is the true class, <c>t</c> the
    /// target and <c>z_pi1 &gt;= z_pi2 &gt;= ...</c> the sorted logits. It differs from
    /// <see cref="PerSample"/> with <see cref="AttackLoss.Dlr"/> and <c>targeted: true</c>, which knows only the
    /// target and compares it with the best other class; maximising it pulls the target above the true class.
    /// </summary>
    /// <param name="logits">Classifier output <c>[B, classes]</c>, at least 4 classes.</param>
    /// <param name="labels">int64 <c>[B]</c>: true classes.</param>
    /// <param name="targets">int64 <c>[B]</c>: target classes.</param>
    public static Tensor TargetedDlr(Tensor logits, Tensor labels, Tensor targets)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(targets);
        if (logits.dim() != 2)
            throw new ArgumentException($"logits must be [B, classes], got [{string.Join(", ", logits.shape)}].", nameof(logits));
        if (logits.shape[1] < 4)
            throw new ArgumentException($"The targeted DLR loss needs at least 4 classes, got logits with {logits.shape[1]}.", nameof(logits));
        if (labels.dim() != 1 || labels.shape[0] != logits.shape[0])
            throw new ArgumentException($"labels must be [{logits.shape[0]}] to match logits [{string.Join(", ", logits.shape)}], got [{string.Join(", ", labels.shape)}].", nameof(labels));
        if (targets.dim() != 1 || targets.shape[0] != logits.shape[0])
            throw new ArgumentException($"targets must be [{logits.shape[0]}] to match logits [{string.Join(", ", logits.shape)}], got [{string.Join(", ", targets.shape)}].", nameof(targets));
        var sorted = logits.sort(dim: 1, descending: true).Values;
        var scale = sorted[.., 0] - sorted[.., 2].Plus(sorted[.., 3]).Over(2);
        var own = logits.gather(1, labels.unsqueeze(1)).squeeze(1);
        var target = logits.gather(1, targets.unsqueeze(1)).squeeze(1);
        return (target - own) / scale.Plus(1e-12);
    }

    /// <summary>
    /// Whether the attack has reached its goal, per sample (bool <c>[B]</c>): the prediction differs from
    /// the true class (untargeted) or equals the target class (targeted).
    /// </summary>
    /// <param name="logits">Classifier output <c>[B, classes]</c>.</param>
    /// <param name="labels">int64 <c>[B]</c> true or target classes.</param>
    /// <param name="targeted">Whether <paramref name="labels"/> are targets.</param>
    /// <exception cref="ArgumentException">The shapes do not match, or a label is outside <c>[0, classes)</c>.</exception>
    public static Tensor Success(Tensor logits, Tensor labels, bool targeted)
    {
        CheckLabels(logits, labels);
        return Succeeded(logits, labels, targeted);
    }

    internal static Tensor Succeeded(Tensor logits, Tensor labels, bool targeted)
    {
        var predicted = logits.argmax(1);
        return targeted ? predicted.eq(labels) : predicted.ne(labels);
    }

    // A label out of range is a native error inside cross_entropy or gather; name it here instead.
    private static void CheckLabels(Tensor logits, Tensor labels)
    {
        ArgumentNullException.ThrowIfNull(logits);
        TensorChecks.Require(logits, logits.dim() == 2, nameof(logits), "[B, classes]");
        TensorChecks.RequireLabels(labels, logits.shape[0], nameof(labels), logits.shape[1]);
    }

    // z_label - max over the other classes.
    private static Tensor Margin(Tensor logits, Tensor labels)
    {
        var index = labels.unsqueeze(1);
        var own = logits.gather(1, index).squeeze(1);
        var mask = zeros_like(logits, dtype: ScalarType.Bool).scatter(1, index, ones_like(index, dtype: ScalarType.Bool));
        var others = logits.MaskedFill(mask, double.NegativeInfinity).max(1).values;
        return own - others;
    }
}
