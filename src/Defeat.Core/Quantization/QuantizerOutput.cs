using static TorchSharp.torch;

namespace Defeat.Quantization;

/// <summary>Everything one quantizer call gives its caller.</summary>
/// <param name="Quantized">Same shape as the input. Forward value: the chosen codeword; backward: the
/// incoming gradient passes to the input unchanged (straight-through estimator).</param>
/// <param name="Indices">int64 codeword index for each input vector: the input's leading dimensions.</param>
/// <param name="CodebookLoss"><c>mean((sg[z] - e)^2)</c>: moves codewords toward the inputs (scalar).</param>
/// <param name="CommitmentLoss"><c>beta * mean((z - sg[e])^2)</c>: keeps inputs near their codewords (scalar).</param>
/// <param name="UsageCounts">How many input vectors chose each codeword in this call, <c>[K]</c> int64.</param>
/// <param name="Perplexity"><c>exp(-sum p log p)</c> of the codeword usage in this call (scalar): the
/// effective number of codes used, from 1 (collapse) to K (uniform).</param>
public sealed record QuantizerOutput(
    Tensor Quantized,
    Tensor Indices,
    Tensor CodebookLoss,
    Tensor CommitmentLoss,
    Tensor UsageCounts,
    Tensor Perplexity) : TensorResult
{
    /// <inheritdoc />
    protected override IEnumerable<Tensor?> Fields() => [Quantized, Indices, CodebookLoss, CommitmentLoss, UsageCounts, Perplexity];
}
