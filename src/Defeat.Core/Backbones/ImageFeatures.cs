using static TorchSharp.torch;

namespace Defeat.Backbones;

/// <summary>
/// What an image encoder gives DEFEAT for one batch: the class feature that makes the clean
/// branch's logits and the grid (patch) features that PerturbShield reconstructs.
/// </summary>
/// <param name="ClassFeature">The pooled image feature <c>I</c>, <c>[B, D]</c>, in the joint image-text space.</param>
/// <param name="GridFeatures">The patch features <c>I_patch</c>, <c>[B, N, D]</c>, in row-major grid order,
/// projected into the same space as <paramref name="ClassFeature"/>.</param>
public sealed record ImageFeatures(Tensor ClassFeature, Tensor GridFeatures) : TensorResult
{
    /// <inheritdoc />
    protected override IEnumerable<Tensor?> Fields() => [ClassFeature, GridFeatures];
}
