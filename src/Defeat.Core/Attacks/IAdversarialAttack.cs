using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>
/// Crafts adversarial images against a classifier that maps pixels to logits.
/// </summary>
/// <remarks>
/// Images are <c>[B, C, H, W]</c> floats in [0, 1]; the result has the same shape and dtype, lies in
/// the attack's allowed set around <c>images</c> and in [0, 1], and is detached from any graph.
/// An implementation must leave the model as the caller sees it: parameter values, their
/// <c>.grad</c> tensors, <c>requires_grad</c> flags and train/eval mode.
/// Bad input is refused with an <see cref="ArgumentException"/> naming the argument: images that are
/// not floating point, hold NaN or infinite values or leave [0, 1] (checked once per call with
/// <see cref="Defeat.Validation.TensorChecks.RequirePixelRange"/>), labels that are not int64 <c>[B]</c>.
/// An empty batch (<c>B = 0</c>) gives an empty result without calling the model.
/// </remarks>
public interface IAdversarialAttack
{
    /// <summary>Attacks a classifier given as a function from images to logits <c>[B, classes]</c>.</summary>
    /// <param name="model">Images to logits. Its state is the caller's business; the attack takes
    /// input gradients only (it never calls <c>backward()</c>), so parameter gradients stay untouched.</param>
    /// <param name="images">Clean pixels <c>[B, C, H, W]</c> in [0, 1].</param>
    /// <param name="labels">int64 <c>[B]</c>: true classes (untargeted) or target classes (targeted).</param>
    /// <param name="cancellationToken">Stops the attack between steps.</param>
    Tensor Perturb(Func<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default);

    /// <summary>Attacks a classifier module, protecting its state (see <see cref="ModelStateGuard"/>).</summary>
    /// <param name="model">Images to logits <c>[B, classes]</c>.</param>
    /// <param name="images">Clean pixels <c>[B, C, H, W]</c> in [0, 1].</param>
    /// <param name="labels">int64 <c>[B]</c>: true classes (untargeted) or target classes (targeted).</param>
    /// <param name="cancellationToken">Stops the attack between steps.</param>
    Tensor Perturb(nn.Module<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var guard = new ModelStateGuard(model, evalMode: true);
        return Perturb(model.call, images, labels, cancellationToken);
    }
}
