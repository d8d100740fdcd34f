using static TorchSharp.torch;

namespace Defeat.Fusion;

/// <summary>Combines the clean branch's and the robust (shielded) branch's logits into one prediction.</summary>
public interface ILogitFusion
{
    /// <summary>Fuses two <c>[B, classes]</c> logit tensors into <c>[B, classes]</c> logits usable with cross-entropy.</summary>
    /// <param name="clean">Logits from the class feature (clean branch).</param>
    /// <param name="robust">Logits from PerturbShield's projected feature (robust branch).</param>
    Tensor Fuse(Tensor clean, Tensor robust);
}
