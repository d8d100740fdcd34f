using static TorchSharp.torch;

namespace Defeat.Shield;

/// <summary>Everything one PerturbShield call gives its caller.</summary>
/// <param name="Projected">The semantic alignment projection <c>W · Î_patch</c>, <c>[B, D]</c> (not normalised).</param>
/// <param name="Reconstruction">The reconstructed grid <c>Î_patch</c>, <c>[B, N, D]</c>.</param>
/// <param name="Indices">int64 codeword index of each grid position, <c>[B, N]</c>.</param>
/// <param name="ReconstructionLoss"><c>mean((x - x̂)^2)</c>, unweighted (scalar); the target x is not detached.</param>
/// <param name="CodebookLoss">The quantizer's <c>mean((sg[z_e] - z_q)^2)</c>, unweighted (scalar).</param>
/// <param name="CommitmentLoss">The quantizer's <c>beta * mean((z_e - sg[z_q])^2)</c>, weighted by its own commitment weight beta (scalar).</param>
/// <param name="Loss">The VQ-VAE loss <c>ReconstructionWeight * reconstruction + CodebookWeight * (codebook + commitment)</c> (scalar).</param>
/// <param name="Perplexity">Effective number of codewords used in this batch (scalar).</param>
/// <param name="Latents">The quantizer's input for each grid position, <c>[B, N, d]</c> (d = the codeword width), with its
/// autograd history: what <see cref="IPerturbShield.CodeConsistencyLoss"/> pulls toward the clean image's codewords.
/// Null when the shield does not provide it.</param>
public sealed record ShieldOutput(
    Tensor Projected,
    Tensor Reconstruction,
    Tensor Indices,
    Tensor ReconstructionLoss,
    Tensor CodebookLoss,
    Tensor CommitmentLoss,
    Tensor Loss,
    Tensor Perplexity,
    Tensor? Latents = null) : TensorResult
{
    /// <inheritdoc />
    protected override IEnumerable<Tensor?> Fields() =>
        [Projected, Reconstruction, Indices, ReconstructionLoss, CodebookLoss, CommitmentLoss, Loss, Perplexity, Latents];
}
