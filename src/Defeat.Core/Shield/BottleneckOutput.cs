using Defeat.Quantization;
using static TorchSharp.torch;

namespace Defeat.Shield;

/// <summary>What the VQ-VAE bottleneck gives the shield: the quantizer's input and output and the decoder's input.</summary>
/// <param name="Latents">The quantizer's input, channel-last <c>[B, h, w, d]</c> (after the optional projection and normalisation).</param>
/// <param name="Quantizer">The quantizer's output on <paramref name="Latents"/> (channel-last; <c>Indices</c> <c>[B, h, w]</c>).</param>
/// <param name="DecoderInput">The decoder's input, channel-first <c>[B, H, h, w]</c>.</param>
internal sealed record BottleneckOutput(Tensor Latents, QuantizerOutput Quantizer, Tensor DecoderInput);
