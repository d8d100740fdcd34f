using Defeat.Validation;

namespace Defeat.Model;

/// <summary>Options of <see cref="DefeatModel"/>: the objective's weights and which parts are used.</summary>
public sealed record DefeatModelOptions
{
    /// <summary>Weight lambda of the image regulariser (alignment loss); 10 in DEFEAT.</summary>
    public double AlignmentWeight { get; init; } = 10.0;

    /// <summary>Weight mu of the text regulariser; 20 in DEFEAT.</summary>
    public double TextRegularizationWeight { get; init; } = 20.0;

    /// <summary>Weight of the shield's VQ-VAE loss in the total (its parts are weighted inside the shield); 1 in DEFEAT.</summary>
    public double VqVaeWeight { get; init; } = 1.0;

    /// <summary>
    /// Weight of the code-consistency loss (<see cref="Shield.IPerturbShield.CodeConsistencyLoss"/>): pulls the latents of each
    /// adversarial training image toward the codewords its clean image chose. 0 (default, as DEFEAT) turns it off. It needs the
    /// clean images: <see cref="Training.DefeatTrainer"/> passes them (<see cref="DefeatModel.forward(TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor?)"/>);
    /// a forward pass without them leaves the term at 0.
    /// </summary>
    public double CodeConsistencyWeight { get; init; }

    /// <summary>Use PerturbShield and fusion (DEFEAT). False: prompt learner and clean branch only (an APT-style baseline).</summary>
    public bool UseShield { get; init; } = true;

    /// <summary>Use the learned prompts. False: the hand-written template features (zero-shot text side; no text regulariser).</summary>
    public bool UseLearnedPrompts { get; init; } = true;

    /// <summary>Checks every option; throws <see cref="ArgumentOutOfRangeException"/> naming the first bad one.</summary>
    public void Validate()
    {
        OptionChecks.NonNegative(AlignmentWeight, nameof(AlignmentWeight));
        OptionChecks.NonNegative(TextRegularizationWeight, nameof(TextRegularizationWeight));
        OptionChecks.NonNegative(VqVaeWeight, nameof(VqVaeWeight));
        OptionChecks.NonNegative(CodeConsistencyWeight, nameof(CodeConsistencyWeight));
    }
}
