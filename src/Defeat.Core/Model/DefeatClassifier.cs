using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Defeat.Model;

/// <summary>
/// One branch of a <see cref="DefeatModel"/> as an images-to-logits module (see <see cref="DefeatModel.AsClassifier"/>).
/// </summary>
public sealed class DefeatClassifier : Module<Tensor, Tensor>
{
    private readonly DefeatModel model;
    // Held outside RegisterComponents: a Tensor field would become a buffer of this view.
    private readonly Unregistered<Tensor>? _textFeatures;

    /// <summary>Wraps <paramref name="defeatModel"/>; the model is registered as submodule <c>model</c>.</summary>
    /// <param name="defeatModel">The composed model.</param>
    /// <param name="branch">Which logits to return.</param>
    /// <param name="textFeatures">Text features to reuse on every call; null recomputes them per call.</param>
    public DefeatClassifier(DefeatModel defeatModel, Branch branch, Tensor? textFeatures = null) : base(nameof(DefeatClassifier))
    {
        ArgumentNullException.ThrowIfNull(defeatModel);
        if (!Enum.IsDefined(branch))
            throw new ArgumentOutOfRangeException(nameof(branch), branch, $"branch must be Fused, Clean or Robust, got {branch}.");
        if (branch == Branch.Robust && defeatModel.Shield is null)
            throw new ArgumentException("The robust branch needs the shield (DefeatModelOptions.UseShield is false).", nameof(branch));
        model = defeatModel;
        Branch = branch;
        _textFeatures = textFeatures is null ? null : new(textFeatures.detach());
        RegisterComponents();
    }

    /// <summary>The branch this view returns.</summary>
    public Branch Branch { get; }

    /// <summary>Logits <c>[B, classes]</c> of <see cref="Branch"/> for pixels <c>[B, C, H, W]</c> in [0, 1].</summary>
    /// <param name="images">Pixels in [0, 1].</param>
    public override Tensor forward(Tensor images) => model.Logits(images, Branch, _textFeatures?.Value);
}
