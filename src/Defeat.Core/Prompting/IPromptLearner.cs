using static TorchSharp.torch;

namespace Defeat.Prompting;

/// <summary>
/// Learned text prompts for a fixed list of classes: builds the prompt embeddings, turns them into
/// class text features through the backbone's text encoder, and ties them to hand-written prompts.
/// </summary>
public interface IPromptLearner
{
    /// <summary>The class names, in label order (underscores replaced by spaces).</summary>
    IReadOnlyList<string> ClassNames { get; }

    /// <summary>Token ids <c>[classes, L]</c> the prompt embeddings were built from (they locate each end token).</summary>
    Tensor TokenIds { get; }

    /// <summary>Prompt embeddings for all classes, <c>[classes, L, E]</c>, with the learned context in place.</summary>
    Tensor BuildPromptEmbeddings();

    /// <summary>Text features of the learned prompts, <c>[classes, D]</c>, not normalised; differentiable in the context.</summary>
    Tensor EncodeTextFeatures();

    /// <summary>L2-normalised features of the hand-written templates, <c>[classes, D]</c>, computed once and frozen.</summary>
    Tensor HandcraftedTextFeatures { get; }

    /// <summary>The text regulariser: mean L1 distance between <paramref name="normalizedTextFeatures"/> and <see cref="HandcraftedTextFeatures"/> (a scalar).</summary>
    /// <param name="normalizedTextFeatures">L2-normalised learned-prompt features <c>[classes, D]</c>.</param>
    Tensor TextRegularizationLoss(Tensor normalizedTextFeatures);
}
