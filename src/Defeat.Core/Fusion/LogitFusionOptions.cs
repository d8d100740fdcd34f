using Defeat.Validation;

namespace Defeat.Fusion;

/// <summary>Options of <see cref="LogitFusion"/>.</summary>
public sealed record LogitFusionOptions
{
    /// <summary>The fusion rule.</summary>
    public FusionMode Mode { get; init; } = FusionMode.LogitAverage;

    /// <summary>Weight of the clean branch (LogitAverage, ProbabilityAverage; LearnableAlpha's initial value). 0.5 in DEFEAT.</summary>
    public double Alpha { get; init; } = 0.5;

    /// <summary>Confidence score of the Adaptive mode.</summary>
    public ConfidenceMeasure Confidence { get; init; } = ConfidenceMeasure.MaxProbability;

    /// <summary>Temperature of the softmax over the two confidences in the Adaptive mode (smaller: closer to picking one branch).</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Checks every option; throws <see cref="ArgumentOutOfRangeException"/> naming the first bad one.</summary>
    public void Validate()
    {
        OptionChecks.Defined(Mode, nameof(Mode));
        OptionChecks.Defined(Confidence, nameof(Confidence));
        // A learnable alpha's logit is the parameter: 0 and 1 have none.
        bool learnable = Mode == FusionMode.LearnableAlpha;
        OptionChecks.InRange(Alpha, 0, 1, nameof(Alpha), minimumIncluded: !learnable, maximumIncluded: !learnable);
        OptionChecks.Positive(Temperature, nameof(Temperature));
    }
}
