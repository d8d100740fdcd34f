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

    /// <summary>
    /// The code-consistency loss: the mean, over the grid positions of <paramref name="adversarial"/>, of the
    /// quantizer's distance between the position's latent vector and the codeword its clean counterpart chose,
    /// divided by the codeword width (for the Euclidean quantizer <c>mean((z_adv - sg[e_k(clean)])^2)</c>); a scalar.
    /// Gradients reach the adversarial latents only: the clean codes are computed without gradient and without
    /// changing the quantizer, in any mode.
    /// </summary>
    /// <param name="adversarial">The shield's output on the adversarial grid features (its <see cref="ShieldOutput.Latents"/>).</param>
    /// <param name="cleanGridFeatures">Grid features <c>[B, N, D]</c> of the clean images the adversarial ones were made from.</param>
    Tensor CodeConsistencyLoss(ShieldOutput adversarial, Tensor cleanGridFeatures);

    /// <summary>
    /// Until the returned object is disposed, <see cref="Shield"/> keeps its forward values but passes gradients
    /// through the quantizer by the soft-VQ surrogate at relative temperature <paramref name="temperature"/>
    /// (see <see cref="Quantization.SoftQuantizerSurrogate"/>): the adaptive attack on the quantizer.
    /// </summary>
    /// <param name="temperature">Relative temperature tau &gt; 0.</param>
    IDisposable UseSoftQuantization(double temperature);
}
