using static TorchSharp.torch;

namespace Defeat.Backbones;

/// <summary>
/// A backbone whose two encoders take deep prompts from an <see cref="IDeepPromptProvider"/> (MaPLe, FAP and
/// other multimodal prompt learners). A backbone that does not implement it cannot take deep prompts.
/// </summary>
public interface IDeepPromptBackbone : IVisionLanguageBackbone
{
    /// <summary>Width of the image transformer's tokens (the width of vision prompts).</summary>
    int VisionWidth { get; }

    /// <summary>Number of transformer blocks of the image encoder.</summary>
    int VisionLayers { get; }

    /// <summary>Number of transformer blocks of the text encoder (text prompts are <see cref="ITextEncoder.EmbeddingDim"/> wide).</summary>
    int TextLayers { get; }

    /// <summary>Encodes images as <see cref="IImageEncoder.EncodeImage"/> does, with vision prompts from <paramref name="prompts"/>.
    /// The grid features are those of the patch tokens only (never of the prompt tokens).</summary>
    /// <param name="images">Pixels <c>[B, C, H, W]</c> in [0, 1].</param>
    /// <param name="prompts">The per-layer prompts; null encodes exactly as without prompts.</param>
    ImageFeatures EncodeImage(Tensor images, IDeepPromptProvider? prompts);

    /// <summary>Encodes prompt embeddings as <see cref="ITextEncoder.EncodeEmbeddings"/> does, with text prompts from <paramref name="prompts"/>.</summary>
    /// <param name="promptEmbeddings">Token embeddings <c>[n, L, EmbeddingDim]</c>.</param>
    /// <param name="tokenIds">The <c>[n, L]</c> ids (they locate the end token).</param>
    /// <param name="prompts">The per-layer prompts; null encodes exactly as without prompts.</param>
    Tensor EncodeEmbeddings(Tensor promptEmbeddings, Tensor tokenIds, IDeepPromptProvider? prompts);
}
