namespace Defeat.Shield;

/// <summary>How the VQ-VAE of <see cref="PerturbShield"/> normalises each latent vector before the quantizer.</summary>
/// <remarks>
/// The official encoder has no normalisation at its end, so its outputs can grow far beyond the codebook's scale
/// (docs/reproduction.md measured a mean norm of 38.8 against codewords of norm 0.0076). Normalising the
/// quantizer's input ties the two scales together; it pairs naturally with the cosine codebook
/// (<see cref="Quantization.QuantizerDistance.Cosine"/>), for which the commitment term then compares unit vectors.
/// </remarks>
public enum LatentNormalization
{
    /// <summary>No normalisation (the official VQ-VAE).</summary>
    None = 0,

    /// <summary>Each latent vector divided by its L2 norm (at least 1e-12): unit vectors.</summary>
    L2 = 1,

    /// <summary>
    /// <c>LayerNorm</c> over each latent vector's channels, with a learned per-channel scale and shift
    /// (submodule <c>latent_norm</c>: state-dict keys <c>latent_norm.weight</c> and <c>latent_norm.bias</c>).
    /// </summary>
    LayerNorm = 2,
}
