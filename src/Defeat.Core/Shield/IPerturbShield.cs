using static TorchSharp.torch;

namespace Defeat.Shield;

/// <summary>
/// DEFEAT's PerturbShield: reconstructs the grid features through a discrete (vector-quantized)
/// bottleneck, which absorbs small perturbations, and projects the reconstruction onto one feature
/// per image in the backbone's space.
/// </summary>
public interface IPerturbShield
{
    /// <summary>Width <c>D</c> of the grid features.</summary>
    int FeatureDim { get; }

    /// <summary>Number of grid positions <c>N</c> the projection expects.</summary>
    int GridPositions { get; }

    /// <summary>Number of codewords <c>K</c> behind <see cref="ShieldOutput.Indices"/> (each index is in <c>[0, K)</c>).</summary>
    int CodebookSize { get; }

    /// <summary>Runs the shield on grid features <c>[B, N, D]</c>.</summary>
    /// <param name="gridFeatures">Patch features in row-major grid order.</param>
    ShieldOutput Shield(Tensor gridFeatures);

    /// <summary>
    /// The image regulariser <c>L_reg^I</c>: mean L1 distance between the L2-normalised class feature
    /// and the L2-normalised projected feature (the features that make the logits); a scalar.
    /// </summary>
    /// <param name="classFeature">The backbone's class feature <c>[B, D]</c>.</param>
    /// <param name="projectedFeature"><see cref="ShieldOutput.Projected"/>, <c>[B, D]</c>.</param>
    Tensor AlignmentLoss(Tensor classFeature, Tensor projectedFeature);
}
