using Defeat.Attacks;
using Defeat.Validation;
using static TorchSharp.torch;

namespace Defeat.Evaluation;

/// <summary>
/// The sanity checks of the adversarial-robustness literature (Carlini et al., 2019, "On evaluating adversarial
/// robustness"): accuracy must fall as epsilon grows (to chance or below for a large radius), more attack steps
/// must never help the defender, and an unbounded attack must succeed on (nearly) every image. A defence that
/// fails them is masking gradients rather than being robust.
/// </summary>
public static class AttackSanityChecks
{
    /// <summary>Accuracy of <paramref name="model"/> on the images attacked by <paramref name="attack"/>, in [0, 1].</summary>
    /// <param name="model">Images to logits <c>[B, classes]</c>.</param>
    /// <param name="images">Clean pixels <c>[B, C, H, W]</c> in [0, 1], at least one.</param>
    /// <param name="labels">int64 <c>[B]</c> true classes.</param>
    /// <param name="attack">The attack.</param>
    /// <param name="cancellationToken">Stops the attack.</param>
    public static double AccuracyUnderAttack(Func<Tensor, Tensor> model, Tensor images, Tensor labels, IAdversarialAttack attack,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(attack);
        TensorChecks.RequireImages(images, nameof(images));
        if (images.shape[0] == 0)
            throw new ArgumentException("images is an empty batch; expected at least one image to measure an accuracy.", nameof(images));
        TensorChecks.RequireLabels(labels, images.shape[0], nameof(labels));
        using var scope = NewDisposeScope();
        var adversarial = attack.Perturb(model, images, labels, cancellationToken);
        using var noGrad = no_grad();
        return model(adversarial).argmax(-1).eq(labels).to_type(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>Accuracy under the attack <paramref name="attackFor"/> builds for each radius, in the order given.</summary>
    /// <param name="model">Images to logits.</param>
    /// <param name="images">Clean pixels in [0, 1].</param>
    /// <param name="labels">True classes.</param>
    /// <param name="epsilons">Radii in [0, 1] pixel units.</param>
    /// <param name="attackFor">The attack for a radius.</param>
    /// <param name="cancellationToken">Stops the attacks.</param>
    public static IReadOnlyList<double> AccuracyByEpsilon(Func<Tensor, Tensor> model, Tensor images, Tensor labels,
        IReadOnlyList<double> epsilons, Func<double, IAdversarialAttack> attackFor, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(epsilons);
        ArgumentNullException.ThrowIfNull(attackFor);
        return epsilons.Select(e => AccuracyUnderAttack(model, images, labels, attackFor(e), cancellationToken)).ToList();
    }

    /// <summary>Accuracy under the attack <paramref name="attackFor"/> builds for each step count (same radius, start and seed).</summary>
    /// <param name="model">Images to logits.</param>
    /// <param name="images">Clean pixels in [0, 1].</param>
    /// <param name="labels">True classes.</param>
    /// <param name="steps">Step counts.</param>
    /// <param name="attackFor">The attack for a step count.</param>
    /// <param name="cancellationToken">Stops the attacks.</param>
    public static IReadOnlyList<double> AccuracyBySteps(Func<Tensor, Tensor> model, Tensor images, Tensor labels,
        IReadOnlyList<int> steps, Func<int, IAdversarialAttack> attackFor, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(steps);
        ArgumentNullException.ThrowIfNull(attackFor);
        return steps.Select(s => AccuracyUnderAttack(model, images, labels, attackFor(s), cancellationToken)).ToList();
    }

    /// <summary>
    /// The positions <c>i</c> where <c>values[i] &gt; values[i - 1] + tolerance</c>: where a stronger attack (a larger
    /// radius, more steps) left the defender more accurate. Empty when the sequence is non-increasing.
    /// </summary>
    /// <param name="values">Accuracies ordered by attack strength.</param>
    /// <param name="tolerance">Allowed rise (e.g. one image's share of the batch for noisy attacks; 0 for exact checks).</param>
    public static IReadOnlyList<int> Increases(IReadOnlyList<double> values, double tolerance = 0)
    {
        ArgumentNullException.ThrowIfNull(values);
        OptionChecks.NonNegative(tolerance, nameof(tolerance));
        return Enumerable.Range(1, Math.Max(0, values.Count - 1)).Where(i => values[i] > values[i - 1] + tolerance).ToList();
    }
}
