using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Defeat.Clip.Modeling;

/// <summary>
/// One pre-norm transformer block of CLIP: <c>x + attn(ln_1(x))</c>, then <c>x + mlp(ln_2(x))</c>,
/// with a QuickGELU MLP of width <c>4W</c>. Batch-first <c>[B, L, W]</c>.
/// </summary>
public sealed class ResidualAttentionBlock : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch names: they are the state-dict keys.
    private readonly MultiheadSelfAttention attn;
    private readonly LayerNorm ln_1;
    private readonly Sequential mlp;
    private readonly LayerNorm ln_2;
#pragma warning restore IDE1006

    /// <summary>Creates a block.</summary>
    /// <param name="width">Model width <c>W</c>.</param>
    /// <param name="heads">Attention heads.</param>
    /// <param name="causal">Whether attention is causal (text encoder).</param>
    public ResidualAttentionBlock(int width, int heads, bool causal) : base(nameof(ResidualAttentionBlock))
    {
        attn = new MultiheadSelfAttention(width, heads, causal);
        ln_1 = nn.LayerNorm(width);
        mlp = nn.Sequential(
            ("c_fc", nn.Linear(width, 4 * width)),
            ("gelu", new QuickGelu()),
            ("c_proj", nn.Linear(4 * width, width)));
        ln_2 = nn.LayerNorm(width);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        x = x + attn.forward(ln_1.forward(x));
        return x + mlp.forward(ln_2.forward(x));
    }
}
