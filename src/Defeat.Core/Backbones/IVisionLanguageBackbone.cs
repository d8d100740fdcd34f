using static TorchSharp.torch;

namespace Defeat.Backbones;

/// <summary>
/// A CLIP-style vision-language model: an image encoder and a text encoder that map into one
/// feature space, compared by cosine similarity times a learned temperature.
/// </summary>
/// <remarks>
/// DEFEAT keeps the backbone frozen; implementations should be TorchSharp modules so that they
/// move between devices and expose their parameters. <c>Defeat.Clip</c> provides OpenAI CLIP;
/// any other model that meets this interface works with every DEFEAT module.
/// </remarks>
public interface IVisionLanguageBackbone : IImageEncoder, ITextEncoder
{
    /// <summary>Width <c>D</c> of the joint image-text feature space.</summary>
    new int FeatureDim { get; }

    /// <summary>The multiplier of cosine similarities, <c>exp(logit_scale)</c> in CLIP: a scalar tensor.</summary>
    Tensor LogitScale { get; }
}
