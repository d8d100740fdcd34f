using static TorchSharp.torch;

namespace Defeat.Model;

/// <summary>One <see cref="DefeatModel"/> forward pass: logits of every branch and every loss term (scalars). Fields may
/// share a tensor (see <see cref="TensorResult"/>): dispose the output, not single fields.</summary>
/// <param name="Logits">The fused logits <c>[B, classes]</c> (the clean logits when the shield is off).</param>
/// <param name="CleanLogits">Clean-branch logits <c>[B, classes]</c>: <c>scale * cos(I, t)</c>.</param>
/// <param name="RobustLogits">Robust-branch logits <c>[B, classes]</c>: <c>scale * cos(Î_proj, t)</c>; null when the shield is off.</param>
/// <param name="Indices">Codeword index per grid position <c>[B, N]</c>; null when the shield is off.</param>
/// <param name="CrossEntropy">Cross-entropy of <paramref name="Logits"/> against the labels.</param>
/// <param name="AlignmentLoss">Image regulariser: mean L1 between normalised class and projected features (0 without shield).</param>
/// <param name="TextRegularization">Text regulariser: mean L1 between normalised learned and hand-written prompt features (0 with hand-written prompts).</param>
/// <param name="VqVaeLoss">The shield's weighted VQ-VAE loss (0 without shield).</param>
/// <param name="ReconstructionLoss">Unweighted reconstruction MSE (0 without shield).</param>
/// <param name="CodebookLoss">Unweighted codebook loss (0 without shield).</param>
/// <param name="CommitmentLoss">The quantizer's commitment loss, weighted by its beta (0 without shield).</param>
/// <param name="Perplexity">Codebook perplexity of the batch (0 without shield).</param>
/// <param name="CodeConsistencyLoss">Code-consistency loss toward the clean images' codewords (0 when its weight is 0, without
/// clean images, or without shield).</param>
/// <param name="Total"><c>CE + lambda * alignment + mu * text regulariser + VqVaeWeight * VQ-VAE loss
/// + CodeConsistencyWeight * code-consistency loss</c>.</param>
public sealed record DefeatOutput(
    Tensor Logits,
    Tensor CleanLogits,
    Tensor? RobustLogits,
    Tensor? Indices,
    Tensor CrossEntropy,
    Tensor AlignmentLoss,
    Tensor TextRegularization,
    Tensor VqVaeLoss,
    Tensor ReconstructionLoss,
    Tensor CodebookLoss,
    Tensor CommitmentLoss,
    Tensor Perplexity,
    Tensor CodeConsistencyLoss,
    Tensor Total) : TensorResult
{
    /// <inheritdoc />
    protected override IEnumerable<Tensor?> Fields() =>
    [
        Logits, CleanLogits, RobustLogits, Indices, CrossEntropy, AlignmentLoss, TextRegularization, VqVaeLoss,
        ReconstructionLoss, CodebookLoss, CommitmentLoss, Perplexity, CodeConsistencyLoss, Total,
    ];
}
