using Defeat.Backbones;
using static TorchSharp.torch;

namespace Defeat.Prompting;

/// <summary>
/// One forward's worth of multimodal prompts from a <see cref="FapPromptLearner"/>: the class prompt embeddings
/// (layer 0 of the text tower) and the per-layer tokens both towers ask for as an <see cref="IDeepPromptProvider"/>.
/// </summary>
/// <remarks>The tensors are views of the learner's parameters (differentiable) unless built under <c>no_grad</c>;
/// layers at or beyond the prompt depth get null (their prompt positions keep the previous block's outputs).</remarks>
public sealed class DeepPrompts : IDeepPromptProvider
{
    private readonly IReadOnlyList<Tensor?> _text;
    private readonly IReadOnlyList<Tensor?> _vision;

    /// <summary>Creates the prompts of one forward.</summary>
    /// <param name="promptEmbeddings">Class prompt embeddings <c>[classes, L, E]</c> with the layer-0 text context in place.</param>
    /// <param name="tokenIds">Their token ids <c>[classes, L]</c>.</param>
    /// <param name="text">Text tokens <c>[P, E]</c> per layer (index 0 is normally null: the context is in the embeddings).</param>
    /// <param name="vision">Vision tokens <c>[P, VisionWidth]</c> per layer; empty when the image tower is not prompted.</param>
    public DeepPrompts(Tensor promptEmbeddings, Tensor tokenIds, IReadOnlyList<Tensor?> text, IReadOnlyList<Tensor?> vision)
    {
        ArgumentNullException.ThrowIfNull(promptEmbeddings);
        ArgumentNullException.ThrowIfNull(tokenIds);
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(vision);
        PromptEmbeddings = promptEmbeddings;
        TokenIds = tokenIds;
        _text = text;
        _vision = vision;
    }

    /// <summary>Class prompt embeddings <c>[classes, L, E]</c>.</summary>
    public Tensor PromptEmbeddings { get; }

    /// <summary>Token ids <c>[classes, L]</c> (they locate each end token).</summary>
    public Tensor TokenIds { get; }

    /// <summary>Text tokens per layer.</summary>
    public IReadOnlyList<Tensor?> Text => _text;

    /// <summary>Vision tokens per layer.</summary>
    public IReadOnlyList<Tensor?> Vision => _vision;

    /// <inheritdoc/>
    public Tensor? PromptTokens(PromptTower tower, int layer)
    {
        var list = tower == PromptTower.Text ? _text : _vision;
        return layer >= 0 && layer < list.Count ? list[layer] : null;
    }
}
