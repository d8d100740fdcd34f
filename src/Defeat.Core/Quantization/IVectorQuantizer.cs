using TorchSharp;
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

    /// <summary>
    /// Distances <c>[..., K]</c> from each input vector <c>[..., D]</c> to every codeword, as this quantizer measures
    /// "nearest" (the chosen code is the argmin, up to rounding on near-ties). Differentiable in the input only
    /// (the codewords are constants); it never changes the quantizer's state, in any mode.
    /// </summary>
    /// <remarks>
    /// The default is the squared Euclidean distance <c>|z|^2 + |e_k|^2 - 2 z.e_k</c> (clamped at 0) to the codewords of
    /// <see cref="Lookup"/>. Used by the soft-VQ surrogate attack (<see cref="SoftQuantizerSurrogate"/>) and by the
    /// code-consistency loss of the shield.
    /// </remarks>
    /// <param name="input">Input vectors <c>[..., D]</c>.</param>
    Tensor Distances(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.dim() == 0 || input.shape[^1] != Dim)
            throw new ArgumentException($"Expected input of shape [..., {Dim}] (last dimension = Dim); got [{string.Join(", ", input.shape)}].", nameof(input));
        using var scope = torch.NewDisposeScope();
        Tensor codes = Lookup(ScalarOps.Arange(CodebookSize, dtype: ScalarType.Int64, device: input.device)).detach().to(input.dtype, input.device);
        return SquaredDistances(input, codes).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <c>|z|^2 + |e_k|^2 - 2 z.e_k</c>, clamped at 0, between inputs <c>[..., D]</c> and codewords <c>[K, D]</c>: <c>[..., K]</c>.
    /// </summary>
    /// <param name="input">Input vectors <c>[..., D]</c>.</param>
    /// <param name="codewords">Codewords <c>[K, D]</c> of the input's dtype and device.</param>
    internal static Tensor SquaredDistances(Tensor input, Tensor codewords)
    {
        using var scope = torch.NewDisposeScope();
        long[] leading = input.shape[..^1];
        Tensor z = input.reshape(-1, input.shape[^1]);
        Tensor d = z.Square().sum(1, keepdim: true).Plus(codewords.Square().sum(1).unsqueeze(0)) - z.matmul(codewords.t()).Times(2);
        return d.ClampMin(0).reshape([.. leading, codewords.shape[0]]).MoveToOuterDisposeScope();
    }
}
