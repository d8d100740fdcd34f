using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Defeat.Shield;

/// <summary>
/// The VQ-VAE's residual block: <c>x + Conv1x1(ReLU(Conv3x3(ReLU(x))))</c>, width preserved, stride 1.
/// Fields <c>conv1</c> (3x3, padding 1) and <c>conv2</c> (1x1) as in the official <c>ResidualBlock</c>.
/// </summary>
public sealed class ResidualBlock : Module<Tensor, Tensor>
{
    private readonly ReLU relu;
    private readonly Conv2d conv1;
    private readonly Conv2d conv2;

    /// <summary>Creates the block for <paramref name="channels"/> channels.</summary>
    /// <param name="channels">Input and output channels.</param>
    public ResidualBlock(int channels) : base(nameof(ResidualBlock))
    {
        relu = ReLU();
        conv1 = Conv2d(channels, channels, 3, stride: 1, padding: 1);
        conv2 = Conv2d(channels, channels, 1);
        RegisterComponents();
    }

    /// <summary>Applies the block to <c>[B, C, h, w]</c>.</summary>
    /// <param name="x">Feature map.</param>
    public override Tensor forward(Tensor x) => x.Plus(conv2.call(relu.call(conv1.call(relu.call(x)))));
}
