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
    private readonly MlpLayers _mlp;

    // addmm takes float scalars: 1.702f is also the factor a float32 reference multiplies by; in float64 the pair
    // below differs from 1.702 and 1/1.702 by about 1e-8 (relative), far inside the parity tolerances.
    private const float Slope = (float)QuickGelu.Slope;
    private const float InverseSlope = (float)(1 / QuickGelu.Slope);

    /// <summary>Creates a block.</summary>
    /// <param name="width">Model width <c>W</c>.</param>
    /// <param name="heads">Attention heads.</param>
    /// <param name="causal">Whether attention is causal (text encoder).</param>
    public ResidualAttentionBlock(int width, int heads, bool causal) : base(nameof(ResidualAttentionBlock))
    {
        attn = new MultiheadSelfAttention(width, heads, causal);
        ln_1 = nn.LayerNorm(width);
        var fc = nn.Linear(width, 4 * width);
        var proj = nn.Linear(4 * width, width);
        mlp = nn.Sequential(("c_fc", fc), ("gelu", new QuickGelu()), ("c_proj", proj));
        _mlp = new MlpLayers(fc, proj);
        ln_2 = nn.LayerNorm(width);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        x = Residual(x, attn.forward(ln_1.forward(x)));
        return Residual(x, Mlp(ln_2.forward(x)));
    }

    // mlp = c_proj(QuickGELU(c_fc(x))) with QuickGELU(h) = silu(1.702 h) / 1.702: the factor 1.702 rides on c_fc's
    // GEMM (alpha and beta scale the product and the bias) and 1 / 1.702 on c_proj's (alpha), so the activation is a
    // single fused pass forward and backward instead of three and five.
    private Tensor Mlp(Tensor x)
    {
        var (fc, proj) = (_mlp.Fc, _mlp.Proj);
        if (fc.bias is null || proj.bias is null)
            return mlp.forward(x);
        long[] shape = x.shape;
        var rows = x.reshape(-1, shape[^1]);
        var h = torch.addmm(fc.bias, rows, fc.weight!.t(), beta: Slope, alpha: Slope);
        // In place when no graph is recorded: SiLU's backward would need the input it overwrites.
        var activated = h.requires_grad ? nn.functional.silu(h) : h.silu_();
        var y = torch.addmm(proj.bias, activated, proj.weight!.t(), beta: 1, alpha: InverseSlope);
        shape[^1] = y.shape[1];
        return y.view(shape);
    }

    // x + y; in place on the fresh y when no graph is recorded (in place on a view would cost copies in backward).
    private static Tensor Residual(Tensor x, Tensor y) => x.requires_grad || y.requires_grad ? x.Plus(y) : y.Plus_(x);

    // The MLP's linear layers, held outside RegisterComponents (they are registered once, inside mlp).
    private sealed record MlpLayers(Linear Fc, Linear Proj);
}
