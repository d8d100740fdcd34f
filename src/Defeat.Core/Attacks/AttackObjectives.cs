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
    public static Tensor PerSample(Tensor logits, Tensor labels, AttackLoss loss, bool targeted)
    {
        ArgumentNullException.ThrowIfNull(logits);
        TensorChecks.Require(logits, logits.dim() == 2, nameof(logits), "[B, classes]");
        TensorChecks.RequireLabels(labels, logits.shape[0], nameof(labels));

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
                    ? sorted[.., 0] - (sorted[.., 2] + sorted[.., 3]) / 2
                    : sorted[.., 0] - sorted[.., 2];
                var margin = Margin(logits, labels);
                return (targeted ? margin : -margin) / (scale + 1e-12);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(loss), loss, $"Unknown attack loss {loss}.");
        }
    }

    /// <summary>
    /// Whether the attack has reached its goal, per sample (bool <c>[B]</c>): the prediction differs from
    /// the true class (untargeted) or equals the target class (targeted).
    /// </summary>
    /// <param name="logits">Classifier output <c>[B, classes]</c>.</param>
    /// <param name="labels">int64 <c>[B]</c> true or target classes.</param>
    /// <param name="targeted">Whether <paramref name="labels"/> are targets.</param>
    public static Tensor Success(Tensor logits, Tensor labels, bool targeted)
    {
        var predicted = logits.argmax(1);
        return targeted ? predicted.eq(labels) : predicted.ne(labels);
    }

    // z_label - max over the other classes.
    private static Tensor Margin(Tensor logits, Tensor labels)
    {
        var index = labels.unsqueeze(1);
        var own = logits.gather(1, index).squeeze(1);
        var mask = zeros_like(logits, dtype: ScalarType.Bool).scatter(1, index, ones_like(index, dtype: ScalarType.Bool));
        var others = logits.masked_fill(mask, double.NegativeInfinity).max(1).values;
        return own - others;
    }
}
