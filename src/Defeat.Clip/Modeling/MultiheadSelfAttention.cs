using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Defeat.Clip.Modeling;

/// <summary>
/// Multi-head self-attention with the parameter names of PyTorch's <c>nn.MultiheadAttention</c>
/// (<c>in_proj_weight</c>, <c>in_proj_bias</c>, <c>out_proj</c>), so CLIP checkpoints load unchanged.
/// Inputs are batch-first <c>[B, L, W]</c>.
/// </summary>
/// <remarks>
/// Written here rather than taken from TorchSharp so that the state-dict keys and the causal mask
/// (applied by the fused attention kernel, never stored) are under this library's control.
/// </remarks>
public sealed class MultiheadSelfAttention : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch names: they are the state-dict keys.
    private readonly Parameter in_proj_weight;
    private readonly Parameter in_proj_bias;
    private readonly Linear out_proj;
#pragma warning restore IDE1006

    /// <summary>Model width <c>W</c>.</summary>
    public int Width { get; }

    /// <summary>Number of attention heads; <c>W</c> is split evenly among them.</summary>
    public int Heads { get; }

    /// <summary>Whether position <c>i</c> may attend only to positions <c>j &lt;= i</c> (CLIP's text encoder).</summary>
    public bool Causal { get; }

    /// <summary>Creates the attention with zero-initialised projections (weights come from a checkpoint or an initialiser).</summary>
    /// <param name="width">Model width <c>W</c>.</param>
    /// <param name="heads">Number of heads; must divide <paramref name="width"/>.</param>
    /// <param name="causal">Whether to apply a causal mask.</param>
    public MultiheadSelfAttention(int width, int heads, bool causal) : base(nameof(MultiheadSelfAttention))
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(width, 0);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(heads, 0);
        if (width % heads != 0)
            throw new ArgumentException($"width ({width}) must be divisible by heads ({heads}).", nameof(heads));
        Width = width;
        Heads = heads;
        Causal = causal;
        in_proj_weight = new Parameter(torch.zeros(3 * width, width));
        in_proj_bias = new Parameter(torch.zeros(3 * width));
        out_proj = nn.Linear(width, width);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        long batch = x.shape[0], length = x.shape[1];
        int headDim = Width / Heads;
        // [B, L, 3W] in three [B, L, W] chunks, each viewed as strided [B, H, L, W/H]: no copies, and in backward one
        // concatenation (select() views would each cost a zero-filled [B, L, 3W] gradient instead).
        var parts = nn.functional.linear(x, in_proj_weight, in_proj_bias).chunk(3, dim: -1);
        Tensor Split(Tensor t) => t.view(batch, length, Heads, headDim).transpose(1, 2);
        var q = Split(parts[0]);
        var k = Split(parts[1]);
        var v = Split(parts[2]);

        // softmax(q k^T / sqrt(d) + mask) v ("Attention Is All You Need") as libtorch's fused kernel: on CPU it
        // never forms the [B, H, L, L] scores in memory, reads the strided views in place, applies the causal
        // mask by skipping blocks, and its backward is fused too.
        var attended = nn.functional.scaled_dot_product_attention(q, k, v, null, 0.0, Causal);
        // The fused kernel writes [B, L, H, d] memory: merging the heads back is a view, not a copy.
        var merged = attended.transpose(1, 2).reshape(batch, length, Width);
        return out_proj.forward(merged);
    }
}
