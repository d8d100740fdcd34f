using static TorchSharp.torch;

namespace Defeat.Backbones;

/// <summary>
/// The text side of a vision-language backbone: a tokenizer, the frozen token embedding and
/// a transformer that turns token (or learned prompt) embeddings into features.
/// </summary>
/// <remarks>
/// Prompt learning (CoOp, and DEFEAT's PromptLearner) replaces some token embeddings with
/// learned vectors and feeds the result through <see cref="EncodeEmbeddings"/>; the token ids
/// still tell the encoder where each sequence ends.
/// </remarks>
public interface ITextEncoder
{
    /// <summary>Width <c>D</c> of the text features (the joint image-text space).</summary>
    int FeatureDim { get; }

    /// <summary>Width of the token embeddings fed to the transformer.</summary>
    int EmbeddingDim { get; }

    /// <summary>Length every token sequence is padded or truncated to (77 for CLIP).</summary>
    int ContextLength { get; }

    /// <summary>Tokenizes texts into <c>[n, ContextLength]</c> int64 ids with start and end tokens, zero-padded.</summary>
    Tensor Tokenize(IReadOnlyList<string> texts);

    /// <summary>Token ids of one text without start or end token and without padding.</summary>
    IReadOnlyList<int> Encode(string text);

    /// <summary>Looks up the frozen token embeddings: <c>[n, L]</c> ids to <c>[n, L, EmbeddingDim]</c>.</summary>
    Tensor EmbedTokens(Tensor tokenIds);

    /// <summary>Encodes token ids <c>[n, L]</c> into text features <c>[n, FeatureDim]</c>.</summary>
    Tensor EncodeText(Tensor tokenIds);

    /// <summary>
    /// Encodes prompt embeddings <c>[n, L, EmbeddingDim]</c> into text features <c>[n, FeatureDim]</c>.
    /// </summary>
    /// <param name="promptEmbeddings">Token embeddings, some of them learned.</param>
    /// <param name="tokenIds">The <c>[n, L]</c> ids the embeddings were built from; the encoder reads
    /// the end-of-text position from them.</param>
    Tensor EncodeEmbeddings(Tensor promptEmbeddings, Tensor tokenIds);
}
