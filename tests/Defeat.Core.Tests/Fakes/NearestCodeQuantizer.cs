using Defeat.Quantization;

namespace Defeat.Tests.Fakes;

/// <summary>
/// A brute-force quantizer that is not a TorchSharp module: it proves the shield works with any
/// <see cref="IVectorQuantizer"/>. Its commitment weight is deliberately odd (3.0), so a test sees the shield use it.
/// </summary>
internal sealed class NearestCodeQuantizer : IVectorQuantizer
{
    private readonly Tensor _codebook;

    public NearestCodeQuantizer(Tensor codebook) => _codebook = codebook;

    public int CodebookSize => (int)_codebook.shape[0];
    public int Dim => (int)_codebook.shape[1];
    public int Calls { get; private set; }

    public QuantizerOutput Quantize(Tensor input)
    {
        Calls++;
        var z = input.reshape(-1, Dim);
        var distances = (z.detach().unsqueeze(1) - _codebook.unsqueeze(0)).Pow(2).sum(2);
        var indices = distances.argmin(1);
        var e = _codebook.index_select(0, indices);
        var quantized = z.Plus((e - z).detach());
        var usage = bincount(indices, minlength: CodebookSize);
        var p = usage.to_type(ScalarType.Float64).Over(Math.Max(1, indices.shape[0]));
        var perplexity = (-(p * p.Plus(1e-12).log()).sum()).exp();
        return new QuantizerOutput(quantized.reshape(input.shape), indices.reshape(input.shape[..^1]),
            nn.functional.mse_loss(e, z.detach()), nn.functional.mse_loss(z, e.detach()).Times(3.0), usage, perplexity);
    }

    public Tensor Lookup(Tensor indices) => _codebook.index_select(0, indices.reshape(-1)).reshape([.. indices.shape, Dim]);
}
