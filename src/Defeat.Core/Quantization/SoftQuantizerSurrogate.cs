using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Quantization;

/// <summary>
/// The soft-VQ surrogate of an adaptive attack on a quantizing defence: the forward value stays the hard
/// codeword, while the backward pass differentiates a softmin-weighted mixture of all codewords, so the gradient
/// says how moving the input shifts the choice between codes (straight-through says nothing about that).
/// </summary>
/// <remarks>
/// <para>For a row with distances <c>d_k</c> to the K codewords <c>e_k</c> (as the quantizer measures them), the weights
/// are <c>w = softmax(-d / (tau * g))</c>, where <c>g = d_(2) - d_(1)</c> is the row's gap between its second-nearest and
/// nearest distance (held constant; 1 when K = 1, at least 1e-12). The temperature is thus relative: at
/// <c>tau = 1</c> the second-nearest code weighs <c>e^-1</c> of the nearest one, whatever the scale of the latents.
/// The output is <c>sg[e_hard] + (s - sg[s])</c> with <c>s = sum_k w_k e_k</c>, so the gradient to the input is
/// <c>(ds/dz)^T g_out</c>; for squared Euclidean distances <c>ds/dz = 2/(tau g) * Cov_w(e)</c>, the w-weighted
/// covariance of the codewords. Codewords carry no gradient.</para>
/// </remarks>
public static class SoftQuantizerSurrogate
{
    /// <summary>Smallest per-row gap used to scale the temperature.</summary>
    public const double MinimumGap = 1e-12;

    /// <summary>
    /// Returns a tensor whose value is <paramref name="hardQuantized"/> and whose gradient reaches the input
    /// through <paramref name="distances"/> as described in the class remarks.
    /// </summary>
    /// <param name="hardQuantized">The quantizer's output <c>[M, D]</c> (its value is kept; detached here).</param>
    /// <param name="distances">Distances <c>[M, K]</c> from each input row to every codeword, differentiable in the
    /// input (e.g. <see cref="IVectorQuantizer.Distances"/>).</param>
    /// <param name="codewords">All codewords <c>[K, D]</c> as the quantizer outputs them; detached here.</param>
    /// <param name="temperature">Relative temperature tau &gt; 0.</param>
    /// <exception cref="ArgumentException">Shapes disagree.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="temperature"/> is not a finite number &gt; 0.</exception>
    public static Tensor Apply(Tensor hardQuantized, Tensor distances, Tensor codewords, double temperature)
    {
        ArgumentNullException.ThrowIfNull(hardQuantized);
        ArgumentNullException.ThrowIfNull(distances);
        ArgumentNullException.ThrowIfNull(codewords);
        CheckTemperature(temperature, nameof(temperature));
        if (hardQuantized.dim() != 2)
            throw new ArgumentException($"Expected hardQuantized of shape [M, D]; got [{string.Join(", ", hardQuantized.shape)}].", nameof(hardQuantized));
        if (codewords.dim() != 2 || codewords.shape[1] != hardQuantized.shape[1])
            throw new ArgumentException($"Expected codewords of shape [K, {hardQuantized.shape[1]}]; got [{string.Join(", ", codewords.shape)}].", nameof(codewords));
        if (distances.dim() != 2 || distances.shape[0] != hardQuantized.shape[0] || distances.shape[1] != codewords.shape[0])
            throw new ArgumentException(
                $"Expected distances of shape [{hardQuantized.shape[0]}, {codewords.shape[0]}] (rows of hardQuantized, codewords); got [{string.Join(", ", distances.shape)}].", nameof(distances));

        using var scope = torch.NewDisposeScope();
        Tensor gap;
        using (torch.no_grad())
        {
            if (distances.shape[1] >= 2)
            {
                Tensor two = distances.detach().topk(2, dim: 1, largest: false).values;
                gap = (two[.., 1..2] - two[.., 0..1]).ClampMin(MinimumGap);
            }
            else
            {
                gap = torch.ones(new long[] { distances.shape[0], 1 }, dtype: distances.dtype, device: distances.device);
            }
        }
        Tensor weights = (-distances / gap.Times(temperature)).softmax(1);
        Tensor soft = weights.matmul(codewords.detach().to(weights.dtype));
        return hardQuantized.detach().Plus(soft - soft.detach()).MoveToOuterDisposeScope();
    }

    /// <summary>Throws unless <paramref name="temperature"/> is a finite number &gt; 0.</summary>
    internal static void CheckTemperature(double temperature, string name)
    {
        if (!(temperature > 0) || double.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(name, temperature, $"{name} must be a finite number > 0, got {temperature}.");
    }
}
