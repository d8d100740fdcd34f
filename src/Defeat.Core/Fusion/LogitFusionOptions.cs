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
        if (!Enum.IsDefined(Mode))
            throw new ArgumentOutOfRangeException(nameof(Mode), Mode, $"{nameof(Mode)} must be a FusionMode, got {Mode}.");
        if (!Enum.IsDefined(Confidence))
            throw new ArgumentOutOfRangeException(nameof(Confidence), Confidence, $"{nameof(Confidence)} must be a ConfidenceMeasure, got {Confidence}.");
        if (Mode == FusionMode.LearnableAlpha ? !(Alpha > 0 && Alpha < 1) : !(Alpha >= 0 && Alpha <= 1))
            throw new ArgumentOutOfRangeException(nameof(Alpha), Alpha,
                Mode == FusionMode.LearnableAlpha
                    ? $"{nameof(Alpha)} must lie in (0, 1) for a learnable alpha (its logit is the parameter), got {Alpha}."
                    : $"{nameof(Alpha)} must lie in [0, 1], got {Alpha}.");
        if (!(Temperature > 0) || double.IsInfinity(Temperature))
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, $"{nameof(Temperature)} must be a finite number > 0, got {Temperature}.");
    }
}
