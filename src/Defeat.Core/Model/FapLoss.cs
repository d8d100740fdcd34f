using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Defeat.Model;

/// <summary>The adversarial term of FAP's objective (Zhou et al., NeurIPS 2024, and its official code).</summary>
public static class FapLoss
{
    /// <summary>
    /// <c>mean_b[ KL_b * (cos(f_clean_b, f_adv_b) + 1) ]</c>, where <c>KL_b = sum_c p_clean (log p_clean - log p_adv)</c>
    /// with <c>p = softmax(logits)</c>: the official <c>F.kl_div(log_softmax(adv), softmax(clean))</c> per image, which the
    /// paper writes as the divergence between the adversarial and the clean distributions. Gradients flow through both
    /// distributions and both features, as in the official code.
    /// </summary>
    /// <param name="cleanLogits">Logits of the clean images <c>[B, classes]</c>.</param>
    /// <param name="adversarialLogits">Logits of the adversarial images <c>[B, classes]</c>.</param>
    /// <param name="cleanFeatures">Image features of the clean images <c>[B, D]</c> (any norm: only their cosine counts).</param>
    /// <param name="adversarialFeatures">Image features of the adversarial images <c>[B, D]</c>.</param>
    /// <returns>A scalar.</returns>
    /// <exception cref="ArgumentException">The shapes differ or are not two-dimensional, or the batch is empty.</exception>
    public static Tensor AdversarialTerm(Tensor cleanLogits, Tensor adversarialLogits, Tensor cleanFeatures, Tensor adversarialFeatures)
    {
        ArgumentNullException.ThrowIfNull(cleanLogits);
        ArgumentNullException.ThrowIfNull(adversarialLogits);
        ArgumentNullException.ThrowIfNull(cleanFeatures);
        ArgumentNullException.ThrowIfNull(adversarialFeatures);
        if (cleanLogits.dim() != 2 || cleanLogits.shape[0] == 0 || !cleanLogits.shape.SequenceEqual(adversarialLogits.shape))
            throw new ArgumentException($"The logits must be [B >= 1, classes] and alike; got clean [{string.Join(", ", cleanLogits.shape)}], " +
                $"adversarial [{string.Join(", ", adversarialLogits.shape)}].", nameof(adversarialLogits));
        if (cleanFeatures.dim() != 2 || cleanFeatures.shape[0] != cleanLogits.shape[0] || !cleanFeatures.shape.SequenceEqual(adversarialFeatures.shape))
            throw new ArgumentException($"The features must be [{cleanLogits.shape[0]}, D] and alike; got clean [{string.Join(", ", cleanFeatures.shape)}], " +
                $"adversarial [{string.Join(", ", adversarialFeatures.shape)}].", nameof(adversarialFeatures));
        using var scope = NewDisposeScope();
        var logClean = functional.log_softmax(cleanLogits, 1);
        var logAdversarial = functional.log_softmax(adversarialLogits, 1);
        var divergence = (logClean.exp() * (logClean - logAdversarial)).sum(1);
        var weight = functional.cosine_similarity(cleanFeatures, adversarialFeatures, 1).Plus(1);
        return (divergence * weight).mean().MoveToOuterDisposeScope();
    }
}
