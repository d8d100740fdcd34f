using Defeat.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Defeat.Shield;

/// <summary>
/// The VQ-VAE of PerturbShield on a grid feature map <c>[B, D, h, w]</c> (all convolutions stride 1,
/// padding 1, with bias; no normalisation):
/// encoder <c>Conv3x3(D-&gt;H), ReLU, Conv3x3(H-&gt;H), ResidualBlock(H)</c>; a vector quantizer of width H;
/// decoder <c>Conv3x3(H-&gt;H), ResidualBlock(H), ConvTranspose3x3(H-&gt;D)</c>.
/// </summary>
/// <remarks>
/// Fields <c>encoder</c>, <c>vq_embedding</c> (the quantizer) and <c>decoder</c> mirror the official
/// <c>VQVAE_NET</c>, so its state dict (<c>encoder.0.weight</c>, ..., <c>vq_embedding.weight</c>, ...) loads
/// without renaming when the quantizer is a <see cref="VectorQuantizer"/> (codebook key <c>weight</c>).
/// A quantizer that is not a TorchSharp module is used but not registered.
/// </remarks>
public sealed class GridVqVae : nn.Module
{
    private readonly Sequential encoder;
    private readonly IVectorQuantizer vq_embedding;
    private readonly Sequential decoder;

    /// <summary>Creates the VQ-VAE around <paramref name="quantizer"/>.</summary>
    /// <param name="featureDim">D, channels of the grid features.</param>
    /// <param name="hiddenDim">H, channels of the latent map; must equal the quantizer's width.</param>
    /// <param name="quantizer">The bottleneck.</param>
    public GridVqVae(int featureDim, int hiddenDim, IVectorQuantizer quantizer) : base(nameof(GridVqVae))
    {
        ArgumentNullException.ThrowIfNull(quantizer);
        if (quantizer.Dim != hiddenDim)
            throw new ArgumentException($"The quantizer's Dim must equal the hidden width {hiddenDim}, got {quantizer.Dim}.", nameof(quantizer));
        encoder = Sequential(
            ("0", Conv2d(featureDim, hiddenDim, 3, stride: 1, padding: 1)),
            ("1", ReLU()),
            ("2", Conv2d(hiddenDim, hiddenDim, 3, stride: 1, padding: 1)),
            ("3", new ResidualBlock(hiddenDim)));
        vq_embedding = quantizer;
        decoder = Sequential(
            ("0", Conv2d(hiddenDim, hiddenDim, 3, stride: 1, padding: 1)),
            ("1", new ResidualBlock(hiddenDim)),
            ("2", ConvTranspose2d(hiddenDim, featureDim, 3, stride: 1, padding: 1)));
        RegisterComponents();
    }

    /// <summary>The bottleneck quantizer.</summary>
    public IVectorQuantizer Quantizer => vq_embedding;

    /// <summary>Encodes <c>[B, D, h, w]</c> into <c>z_e</c>, <c>[B, H, h, w]</c>.</summary>
    /// <param name="x">Grid feature map.</param>
    public Tensor Encode(Tensor x) => encoder.call(x);

    /// <summary>Quantizes <c>z_e</c> <c>[B, H, h, w]</c>; <c>Quantized</c> comes back channel-first, <c>Indices</c> as <c>[B, h, w]</c>.</summary>
    /// <param name="ze">Encoder output.</param>
    public QuantizerOutput Quantize(Tensor ze)
    {
        var output = vq_embedding.Quantize(ze.permute(0, 2, 3, 1));
        return output with { Quantized = output.Quantized.permute(0, 3, 1, 2) };
    }

    /// <summary>Decodes a latent map <c>[B, H, h, w]</c> into <c>[B, D, h, w]</c>.</summary>
    /// <param name="zq">Quantized latents (straight-through).</param>
    public Tensor Decode(Tensor zq) => decoder.call(zq);
}
