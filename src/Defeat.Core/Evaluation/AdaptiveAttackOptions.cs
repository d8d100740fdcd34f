using Defeat.Validation;

namespace Defeat.Evaluation;

/// <summary>Options of <see cref="AdaptiveAttackSuite"/>: the PGD budget shared by every attack of the suite.</summary>
public sealed record AdaptiveAttackOptions
{
    /// <summary>Gradient steps per restart (100, as DEFEAT's evaluation PGD).</summary>
    public int Steps { get; init; } = 100;

    /// <summary>Step size as a fraction of epsilon (1/4, as DEFEAT's evaluation PGD).</summary>
    public double StepFraction { get; init; } = 0.25;

    /// <summary>Random restarts of the restart attack; each sample keeps its worst case (5).</summary>
    public int Restarts { get; init; } = 5;

    /// <summary>Seed of the random starts; every attack of the suite derives its own from it.</summary>
    public ulong Seed { get; init; }

    /// <summary>Also attack with the DLR loss when the model has at least 3 classes.</summary>
    public bool IncludeDlr { get; init; } = true;

    /// <summary>Throws when an option is out of range.</summary>
    public void Validate()
    {
        OptionChecks.AtLeast(Steps, 1, nameof(Steps));
        OptionChecks.Positive(StepFraction, nameof(StepFraction));
        OptionChecks.AtLeast(Restarts, 1, nameof(Restarts));
    }
}
