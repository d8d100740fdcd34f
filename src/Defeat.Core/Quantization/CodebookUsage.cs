using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Quantization;

/// <summary>Small statistics of how a codebook is used, computed from per-code usage counts.</summary>
public static class CodebookUsage
{
    /// <summary>Number of codes chosen at least once.</summary>
    /// <param name="usageCounts"><c>[K]</c> counts, e.g. <see cref="QuantizerOutput.UsageCounts"/>.</param>
    public static long CodesUsed(Tensor usageCounts)
    {
        using var scope = torch.NewDisposeScope();
        return usageCounts.Gt(0).sum().item<long>();
    }

    /// <summary>
    /// Perplexity <c>exp(-sum_k p_k log p_k)</c> with <c>p = counts / sum(counts)</c> and <c>0 log 0 = 0</c>:
    /// the effective number of codes used (1 on collapse, K when uniform; 1 when nothing was counted).
    /// </summary>
    /// <param name="usageCounts"><c>[K]</c> counts of any numeric dtype.</param>
    /// <param name="dtype">Floating dtype of the result.</param>
    /// <returns>A scalar tensor on the counts' device.</returns>
    public static Tensor Perplexity(Tensor usageCounts, ScalarType dtype = ScalarType.Float32)
    {
        using var scope = torch.NewDisposeScope();
        // The quantizer calls this on every forward: the same operations in the same order as
        // exp(-sum(p * log(max(p, tiny)))), with p = counts / max(sum, 1), but in place where a temporary allows.
        Tensor counts = usageCounts.to_type(dtype, copy: true);
        Tensor p = counts.div_(counts.sum().ClampMin_(1));
        // p * log(max(p, tiny)) is exactly 0 where p = 0, which is the limit of p log p.
        Tensor entropy = p.ClampMin(1e-30).log_().mul_(p).sum().neg_();
        return entropy.exp_().MoveToOuterDisposeScope();
    }
}
