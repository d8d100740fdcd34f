namespace Defeat.Quantization;

/// <summary>How a <see cref="VectorQuantizer"/> measures "nearest" between an input vector and a codeword.</summary>
public enum QuantizerDistance
{
    /// <summary>Squared Euclidean distance <c>|z - e|^2</c>, as in VQ-VAE and the official DEFEAT code.</summary>
    Euclidean = 0,

    /// <summary>
    /// Cosine distance: inputs and codewords are L2-normalised, the nearest code is the one of highest
    /// cosine similarity, and the quantized output and the losses use the unit vectors.
    /// </summary>
    Cosine = 1,
}
