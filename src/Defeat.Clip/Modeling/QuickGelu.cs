using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Clip.Modeling;

/// <summary>CLIP's activation, <c>x * sigmoid(1.702 x)</c>: the approximation of GELU its weights were trained with.</summary>
public sealed class QuickGelu : nn.Module<Tensor, Tensor>
{
    /// <summary>Creates the activation (it has no parameters).</summary>
    public QuickGelu() : base(nameof(QuickGelu)) { }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x) => x * torch.sigmoid(x * 1.702);
}
