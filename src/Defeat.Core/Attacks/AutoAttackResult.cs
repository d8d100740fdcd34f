using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>Adversarial images and the report of an <see cref="AutoAttack"/> run.</summary>
/// <param name="Adversarial">Same shape as the input: for each image the adversarial example of the first attack that
/// fooled the model, and the clean image where none did (or where the model was already wrong).</param>
/// <param name="Robust">bool <c>[B]</c>: classified correctly under every attack.</param>
/// <param name="Report">Per-attack accuracies and warnings.</param>
public sealed record AutoAttackResult(Tensor Adversarial, Tensor Robust, AutoAttackReport Report) : IDisposable
{
    /// <summary>Frees the two tensors.</summary>
    public void Dispose()
    {
        Adversarial.Dispose();
        Robust.Dispose();
    }
}
