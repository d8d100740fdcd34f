using Defeat.Validation;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Clip.Modeling;

/// <summary>
/// <c>(x - mean) / std</c> per channel, so that the model takes pixels in [0, 1] and an attack's
/// epsilon-ball is measured in pixels.
/// </summary>
/// <remarks>
/// Holds the constants as numbers, not buffers: they add no state-dict key (checkpoints stay
/// CLIP's) and they are made on the input's device at each call, so the module follows any device.
/// </remarks>
public sealed class ImageNormalization : nn.Module<Tensor, Tensor>
{
    private readonly float[] _mean;
    private readonly float[] _std;

    /// <summary>Per-channel means.</summary>
    public IReadOnlyList<float> Mean => _mean;

    /// <summary>Per-channel standard deviations.</summary>
    public IReadOnlyList<float> Std => _std;

    /// <summary>Creates the normalisation.</summary>
    /// <param name="mean">One mean per channel.</param>
    /// <param name="std">One positive standard deviation per channel.</param>
    public ImageNormalization(IReadOnlyList<double> mean, IReadOnlyList<double> std) : base(nameof(ImageNormalization))
    {
        if (mean.Count != std.Count)
            throw new ArgumentException($"mean has {mean.Count} values but std has {std.Count}; expected one of each per channel.", nameof(std));
        _mean = mean.Select(m => (float)m).ToArray();
        _std = std.Select(s => (float)s).ToArray();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        TensorChecks.Require(x, x.dim() == 4 && x.shape[1] == _mean.Length, nameof(x), $"images [B, {_mean.Length}, H, W]");
        using var mean = torch.tensor(_mean, dtype: x.dtype, device: x.device).view(1, -1, 1, 1);
        using var std = torch.tensor(_std, dtype: x.dtype, device: x.device).view(1, -1, 1, 1);
        return (x - mean) / std;
    }
}
