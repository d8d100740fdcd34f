using static TorchSharp.torch;

namespace Defeat.Backbones;

/// <summary>
/// Per-layer prompt tokens for deep (MaPLe-style) prompting: the encoder asks, before each of its
/// transformer blocks, for the tokens that replace the prompt tokens of the previous block.
/// </summary>
/// <remarks>
/// <para>The prompt tokens of a tower keep one position and one count <c>P</c> through the whole stack:
/// text prompts occupy positions <c>1..P</c> (after the start token), vision prompts the last <c>P</c> positions
/// (after the patch tokens). At block <c>i</c> the tokens returned for <c>i</c> overwrite those positions, so the
/// outputs of block <c>i - 1</c> at the prompt positions are dropped (replaced, never appended again). A null answer
/// keeps the tokens that are there: the outputs of the previous block.</para>
/// <para>Layer 0 is the input: text prompts of layer 0 replace the token embeddings at positions <c>1..P</c> before
/// the positional embedding is added (null keeps the embeddings the caller passed, e.g. a CoOp context already in
/// place); vision prompts of layer 0 are appended after the positional embedding and before <c>ln_pre</c>, and they
/// fix <c>P</c> for the vision tower (a later layer may not add vision prompts when layer 0 has none).</para>
/// <para>Tokens are <c>[P, width]</c> (shared by the batch) or <c>[B, P, width]</c>, with the tower's width and
/// dtype. Gradients flow from the encoder's output into the returned tensors.</para>
/// </remarks>
public interface IDeepPromptProvider
{
    /// <summary>The prompt tokens for block <paramref name="layer"/> of <paramref name="tower"/>, or null to keep the previous ones.</summary>
    /// <param name="tower">The encoder asking.</param>
    /// <param name="layer">The block index, 0-based; 0 is the encoder's input.</param>
    Tensor? PromptTokens(PromptTower tower, int layer);
}
