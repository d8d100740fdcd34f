using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Clip.Modeling;

/// <summary>CLIP's activation, <c>x * sigmoid(1.702 x)</c>: the approximation of GELU its weights were trained with.</summary>
/// <remarks>Computed as <c>silu(1.702 x) / 1.702</c> (the same function): libtorch's SiLU is one fused pass forward
/// and backward, where the literal product takes three passes forward and five backward.</remarks>
public sealed class QuickGelu : nn.Module<Tensor, Tensor>
{
    /// <summary>The slope 1.702 inside the sigmoid.</summary>
    internal const double Slope = 1.702;

    /// <summary>Creates the activation (it has no parameters).</summary>
    public QuickGelu() : base(nameof(QuickGelu)) { }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var slope = Slope.ToScalar();
        return nn.functional.silu(x.mul(slope)).div_(slope);
    }
}
