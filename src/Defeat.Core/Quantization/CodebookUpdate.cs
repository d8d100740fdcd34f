namespace Defeat.Quantization;

/// <summary>How a <see cref="VectorQuantizer"/> moves its codewords during training.</summary>
public enum CodebookUpdate
{
    /// <summary>
    /// The codebook is a trainable parameter that learns from <see cref="QuantizerOutput.CodebookLoss"/>
    /// through the optimiser, as in the official DEFEAT code.
    /// </summary>
    Gradient = 0,

    /// <summary>
    /// The codebook is a buffer, set in each training forward pass to the exponential moving average
    /// of the inputs assigned to each code (VQ-VAE-2 style, with Laplace smoothing of the cluster sizes).
    /// The codebook loss then carries no gradient.
    /// </summary>
    ExponentialMovingAverage = 1,
}
