using static TorchSharp.torch;

namespace Defeat.Quantization;

/// <summary>
/// Snaps continuous vectors to their nearest entries of a learned codebook (vector quantization,
/// as in VQ-VAE), passing gradients through the non-differentiable choice with the
/// straight-through estimator.
/// </summary>
public interface IVectorQuantizer
{
    /// <summary>Number of codewords <c>K</c>.</summary>
    int CodebookSize { get; }

    /// <summary>Width <c>D</c> of each codeword and of the input's last dimension.</summary>
    int Dim { get; }

    /// <summary>
    /// Quantizes <paramref name="input"/>, <c>[..., D]</c> (channel-last, any leading dimensions).
    /// </summary>
    QuantizerOutput Quantize(Tensor input);

    /// <summary>Returns the codewords for int64 <paramref name="indices"/> of any shape: <c>[..., D]</c>.</summary>
    Tensor Lookup(Tensor indices);
}
