using static TorchSharp.torch.nn;

namespace Defeat.Tests.Fakes;

/// <summary>
/// A stride-1, same-size 2-D convolution computed as a linear layer over unfolded k x k patches (im2col). The attack
/// tests' small CNNs use it instead of <c>Conv2d</c>: with few channels, oneDNN's convolution backward returns wrong
/// input gradients on some CPUs (docs/reliability.md, "A wrong gradient on some machines"), which would make the
/// attack tests fail for a reason that is not the attack's. Unfold and matmul are exact and deterministic everywhere.
/// </summary>
public sealed class PatchConv : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch-style field name: it is the state-dict key.
    private readonly TorchSharp.Modules.Linear linear;
#pragma warning restore IDE1006
    private readonly long _kernel;
    private readonly long _outChannels;

    /// <summary>Creates the layer.</summary>
    public PatchConv(long inChannels, long outChannels, long kernel) : base(nameof(PatchConv))
    {
        if (kernel % 2 == 0) throw new ArgumentOutOfRangeException(nameof(kernel), kernel, "Expected an odd kernel (same-size output).");
        linear = Linear(inChannels * kernel * kernel, outChannels);
        _kernel = kernel;
        _outChannels = outChannels;
        RegisterComponents();
    }

    /// <summary><c>[B, C, H, W]</c> to <c>[B, outChannels, H, W]</c>.</summary>
    public override Tensor forward(Tensor x)
    {
        var patches = functional.unfold(x, _kernel, padding: _kernel / 2); // [B, C k k, H W]
        return linear.call(patches.transpose(1, 2)).transpose(1, 2).reshape(x.shape[0], _outChannels, x.shape[2], x.shape[3]);
    }
}
