namespace Defeat.Quantization;

/// <summary>
/// How a <see cref="VectorQuantizer"/> adapts its uniformly initialised codebook to the data on the first training
/// batch (besides <see cref="VectorQuantizerOptions.KMeansInit"/>, which excludes these).
/// </summary>
/// <remarks>
/// The official codebook starts at <c>U(-1/K, 1/K)</c>, far smaller than a trained encoder's outputs; every input
/// then snaps to the few outermost codes (see docs/reproduction.md). Both choices here put the codebook at the
/// encoder's scale once, on the first batch the quantizer sees in training mode, and record that in the
/// <c>initialized</c> buffer so that a resumed run does not repeat it.
/// </remarks>
public enum FirstBatchInit
{
    /// <summary>No first-batch step: the codebook keeps its <c>U(-a, a)</c> initialisation (the official behaviour).</summary>
    None = 0,

    /// <summary>
    /// Multiply every codeword by one factor so that the mean codeword norm equals the mean norm of the batch's
    /// inputs: <c>e_k &lt;- e_k * mean_i |z_i| / mean_k |e_k|</c>. The directions stay uniform and random; only the scale
    /// is taken from the data. Not available with <see cref="QuantizerDistance.Cosine"/> (unit codewords have no scale).
    /// </summary>
    MatchInputNorm = 1,

    /// <summary>
    /// Replace the codewords by inputs of the batch drawn at random (distinct inputs when the batch has at least K
    /// rows, otherwise drawn with replacement); unit inputs in cosine mode.
    /// </summary>
    SampleInputs = 2,
}
