namespace Defeat.Quantization;

/// <summary>How a <see cref="VectorQuantizer"/> passes gradients through its non-differentiable nearest-code choice.</summary>
public enum GradientEstimator
{
    /// <summary>
    /// Straight-through (VQ-VAE, the official DEFEAT code): the gradient of the codeword is copied to the
    /// input unchanged, <c>z + (e - z).detach()</c>.
    /// </summary>
    StraightThrough = 0,

    /// <summary>
    /// The rotation trick (Fifty et al., 2024, "Restructuring Vector Quantization with the Rotation Trick"): the
    /// forward value is still the codeword <c>e</c>, but the gradient reaching the input <c>z</c> is the incoming
    /// gradient passed back through the fixed rotation and rescaling that map <c>z</c> onto <c>e</c>:
    /// <c>dL/dz = lambda * R^T dL/de</c> (see <see cref="RotationTrick"/>).
    /// </summary>
    RotationTrick = 1,
}
