using Defeat.Backbones;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Clip.Modeling;

/// <summary>Checks and places the tokens an <see cref="IDeepPromptProvider"/> gives.</summary>
internal static class DeepPromptTokens
{
    /// <summary>Brings tokens <c>[P, W]</c> or <c>[B, P, W]</c> to <c>[B, P, W]</c> in the dtype and on the device of <paramref name="x"/>.</summary>
    public static Tensor Expand(Tensor tokens, Tensor x, PromptTower tower, int layer)
    {
        long batch = x.shape[0], width = x.shape[2];
        bool shared = tokens.dim() == 2 && tokens.shape[1] == width;
        bool perImage = tokens.dim() == 3 && tokens.shape[0] == batch && tokens.shape[2] == width;
        if (!(shared || perImage) || tokens.shape[^2] < 1 || !tokens.is_floating_point())
            throw new ArgumentException(
                $"The {tower} prompt tokens of layer {layer} must be floating [P, {width}] or [{batch}, P, {width}] with P >= 1; " +
                $"got {tokens.dtype} [{string.Join(", ", tokens.shape)}].", nameof(tokens));
        if (tokens.device_type != x.device_type || (tokens.device_type != DeviceType.CPU && tokens.device_index != x.device_index))
            throw new ArgumentException(
                $"The {tower} prompt tokens of layer {layer} are on {tokens.device}; the encoder runs on {x.device}.", nameof(tokens));
        tokens = tokens.to(x.dtype);
        return shared ? tokens.unsqueeze(0).expand(batch, -1, -1) : tokens;
    }

    /// <summary>Overwrites positions <c>start .. start + P - 1</c> of <paramref name="x"/> <c>[B, L, W]</c> with the tokens.</summary>
    /// <param name="x">The token sequence.</param>
    /// <param name="tokens">The provider's tokens.</param>
    /// <param name="start">First prompt position.</param>
    /// <param name="expectedCount">The prompt count already in place (0: any count that fits).</param>
    /// <param name="tower">For messages.</param>
    /// <param name="layer">For messages.</param>
    public static Tensor Replace(Tensor x, Tensor tokens, int start, int expectedCount, PromptTower tower, int layer)
    {
        var placed = Expand(tokens, x, tower, layer);
        long count = placed.shape[1], length = x.shape[1];
        if (expectedCount > 0 && count != expectedCount)
            throw new ArgumentException(
                $"The {tower} prompt tokens of layer {layer} number {count}; the earlier layers placed {expectedCount}, and prompts are replaced one for one.",
                nameof(tokens));
        if (start + count > length)
            throw new ArgumentException(
                $"The {tower} prompt tokens of layer {layer} ({count} from position {start}) run past the sequence of {length} tokens.", nameof(tokens));
        var parts = new List<Tensor>(3);
        if (start > 0) parts.Add(x[.., ..start]);
        parts.Add(placed);
        if (start + count < length) parts.Add(x[.., (int)(start + count)..]);
        return torch.cat(parts, dim: 1);
    }
}
