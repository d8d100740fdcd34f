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
/// <para>Fields <c>encoder</c>, <c>vq_embedding</c> (the quantizer) and <c>decoder</c> mirror the official
/// <c>VQVAE_NET</c>, so its state dict (<c>encoder.0.weight</c>, ..., <c>vq_embedding.weight</c>, ...) loads
/// without renaming when the quantizer is a <see cref="VectorQuantizer"/> (codebook key <c>weight</c>).
/// A quantizer that is not a TorchSharp module is used but not registered.</para>
/// <para>Two optional steps sit between the encoder and the quantizer, both off by default (the official
/// network). A low-dimensional codebook (<c>codeDim</c> = d): the latent vector is projected by a learned
/// <c>Linear(H, d)</c> (field <c>quant_proj</c>) before the lookup and back by <c>Linear(d, H)</c>
/// (<c>post_quant_proj</c>) after it, factorised codes as in ViT-VQGAN; gradients pass the lookup by the
/// quantizer's estimator. A <see cref="Shield.LatentNormalization"/> of the quantizer's input (after the
/// projection when there is one; LayerNorm in field <c>latent_norm</c>). With either step on, the commitment
/// loss compares the quantizer's input with its codewords, in the quantizer's space.</para>
/// </remarks>
public sealed class GridVqVae : nn.Module
{
    private readonly Sequential encoder;
    private readonly Linear? quant_proj;
    private readonly LayerNorm? latent_norm;
    private readonly IVectorQuantizer vq_embedding;
    private readonly Linear? post_quant_proj;
    private readonly Sequential decoder;
    private double? _softTemperature;

    /// <summary>Creates the VQ-VAE around <paramref name="quantizer"/>.</summary>
    /// <param name="featureDim">D, channels of the grid features.</param>
    /// <param name="hiddenDim">H, channels of the latent map; must equal the quantizer's width unless <paramref name="codeDim"/> is set.</param>
    /// <param name="quantizer">The bottleneck.</param>
    /// <param name="latentNormalization">Normalisation of the quantizer's input; none (official) by default.</param>
    /// <param name="codeDim">d: project the latents to d channels before the lookup and back to H after; null (official) for none.
    /// The quantizer's width must then equal d.</param>
    public GridVqVae(int featureDim, int hiddenDim, IVectorQuantizer quantizer,
        LatentNormalization latentNormalization = LatentNormalization.None, int? codeDim = null) : base(nameof(GridVqVae))
    {
        ArgumentNullException.ThrowIfNull(quantizer);
        if (!Enum.IsDefined(latentNormalization))
            throw new ArgumentOutOfRangeException(nameof(latentNormalization), latentNormalization, $"{nameof(latentNormalization)} must be None, L2 or LayerNorm, got {latentNormalization}.");
        if (codeDim is < 1)
            throw new ArgumentOutOfRangeException(nameof(codeDim), codeDim, $"{nameof(codeDim)} must be >= 1 or null, got {codeDim}.");
        int width = codeDim ?? hiddenDim;
        if (quantizer.Dim != width)
            throw new ArgumentException(codeDim is null
                ? $"The quantizer's Dim must equal the hidden width {hiddenDim}, got {quantizer.Dim}."
                : $"The quantizer's Dim must equal the code width codeDim = {width}, got {quantizer.Dim}.", nameof(quantizer));
        LatentNormalization = latentNormalization;
        encoder = Sequential(
            ("0", Conv2d(featureDim, hiddenDim, 3, stride: 1, padding: 1)),
            ("1", ReLU()),
            ("2", Conv2d(hiddenDim, hiddenDim, 3, stride: 1, padding: 1)),
            ("3", new ResidualBlock(hiddenDim)));
        if (codeDim is { } d)
        {
            quant_proj = Linear(hiddenDim, d);
            post_quant_proj = Linear(d, hiddenDim);
        }
        if (latentNormalization == LatentNormalization.LayerNorm)
            latent_norm = LayerNorm(width);
        vq_embedding = quantizer;
        decoder = Sequential(
            ("0", Conv2d(hiddenDim, hiddenDim, 3, stride: 1, padding: 1)),
            ("1", new ResidualBlock(hiddenDim)),
            ("2", ConvTranspose2d(hiddenDim, featureDim, 3, stride: 1, padding: 1)));
        RegisterComponents();
    }

    /// <summary>The bottleneck quantizer.</summary>
    public IVectorQuantizer Quantizer => vq_embedding;

    /// <summary>The normalisation of the quantizer's input.</summary>
    public LatentNormalization LatentNormalization { get; }

    /// <summary>Width of the codewords: d with a low-dimensional codebook, otherwise H.</summary>
    public int CodeDim => vq_embedding.Dim;

    /// <summary>
    /// The relative temperature of the soft-VQ surrogate in force (see <see cref="UseSoftQuantization"/>), or null
    /// when gradients pass the quantizer by its own estimator.
    /// </summary>
    public double? SoftQuantizationTemperature => _softTemperature;

    private bool Transformed => quant_proj is not null || LatentNormalization != LatentNormalization.None;

    /// <summary>Encodes <c>[B, D, h, w]</c> into <c>z_e</c>, <c>[B, H, h, w]</c>.</summary>
    /// <param name="x">Grid feature map.</param>
    public Tensor Encode(Tensor x) => encoder.call(ChannelsLast(x));

    /// <summary>
    /// The quantizer's input for an encoder output <c>z_e</c> <c>[B, H, h, w]</c>: channel-last <c>[B, h, w, d]</c>, projected
    /// (low-dimensional codebook) and normalised when those steps are on; otherwise <c>z_e</c> itself, channel-last.
    /// </summary>
    /// <param name="ze">Encoder output.</param>
    public Tensor Latents(Tensor ze)
    {
        var z = ze.permute(0, 2, 3, 1);
        if (quant_proj is not null) z = quant_proj.call(z);
        return LatentNormalization switch
        {
            LatentNormalization.L2 => functional.normalize(z, p: 2, dim: -1),
            LatentNormalization.LayerNorm => latent_norm!.call(z),
            _ => z,
        };
    }

    /// <summary>
    /// Quantizes <c>z_e</c> <c>[B, H, h, w]</c>; <c>Quantized</c> comes back channel-first <c>[B, H, h, w]</c> (the decoder's
    /// input: projected back to H with a low-dimensional codebook), <c>Indices</c> as <c>[B, h, w]</c>.
    /// </summary>
    /// <param name="ze">Encoder output.</param>
    public QuantizerOutput Quantize(Tensor ze)
    {
        var bottleneck = Bottleneck(ze);
        return bottleneck.Quantizer with { Quantized = bottleneck.DecoderInput };
    }

    /// <summary>Decodes a latent map <c>[B, H, h, w]</c> into <c>[B, D, h, w]</c>.</summary>
    /// <param name="zq">Quantized latents (straight-through).</param>
    public Tensor Decode(Tensor zq) => decoder.call(ChannelsLast(zq));

    // The convolutions run on channels-last maps: oneDNN then uses its NHWC kernels. On NCHW maps whose channel count
    // is not a multiple of the CPU's SIMD block (8 floats on AVX2, 16 on AVX-512) it uses padded blocked layouts, and
    // on some CPUs (this project's AVX2 CI machine, a 2-core AVX-512 EPYC) its backward pass through them returns
    // wrong input gradients, differently on every call with two threads (NaN at times): docs/reliability.md.
    // The values are the same either way; only the memory layout differs.
    private static Tensor ChannelsLast(Tensor x) =>
        x.stride(1) == 1 ? x : x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);

    /// <summary>
    /// Until the returned object is disposed, the quantizer's output keeps its forward value but its gradient comes
    /// from the soft-VQ surrogate at relative temperature <paramref name="temperature"/> (see
    /// <see cref="SoftQuantizerSurrogate"/>); for adaptive attacks. Scopes nest (disposing restores the previous
    /// temperature). Not thread-safe: it is a mode of this module, like train and eval.
    /// </summary>
    /// <param name="temperature">Relative temperature tau &gt; 0.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="temperature"/> is not a finite number &gt; 0.</exception>
    public IDisposable UseSoftQuantization(double temperature)
    {
        SoftQuantizerSurrogate.CheckTemperature(temperature, nameof(temperature));
        var previous = _softTemperature;
        _softTemperature = temperature;
        return new TemperatureScope(this, previous);
    }

    /// <summary>Runs the bottleneck: latents, quantizer (with the surrogate when on), and back-projection (the quantizer's own commitment term measures the latents it saw).</summary>
    internal BottleneckOutput Bottleneck(Tensor ze)
    {
        var latents = Latents(ze);
        var quantized = vq_embedding.Quantize(latents);
        if (_softTemperature is { } tau)
            quantized = quantized with { Quantized = SoftSurrogate(latents, quantized.Quantized, tau) };
        var codes = quantized.Quantized;
        var decoderInput = (post_quant_proj is null ? codes : post_quant_proj.call(codes)).permute(0, 3, 1, 2);
        return new BottleneckOutput(latents, quantized, decoderInput);
    }

    /// <summary>The nearest code of each latent vector <c>[..., d]</c> by the quantizer's distance, without touching its state.</summary>
    internal Tensor NearestCodes(Tensor latents) => vq_embedding.Distances(latents).argmin(-1);

    private Tensor SoftSurrogate(Tensor latents, Tensor hard, double temperature)
    {
        long d = latents.shape[^1];
        var distances = vq_embedding.Distances(latents.reshape(-1, d));
        var codewords = vq_embedding.Lookup(ScalarOps.Arange(vq_embedding.CodebookSize, dtype: ScalarType.Int64, device: latents.device));
        return SoftQuantizerSurrogate.Apply(hard.reshape(-1, d), distances, codewords, temperature).reshape(hard.shape);
    }

    private sealed class TemperatureScope(GridVqVae owner, double? previous) : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            owner._softTemperature = previous;
            _disposed = true;
        }
    }
}
