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

    /// <summary>
    /// Relative temperatures of the soft-VQ surrogate attacks (<see cref="Attacks.SoftQuantizationAttack"/>, one PGD run per
    /// temperature, best per image); empty (default) leaves them out of the suite. See docs/modules.md for a choice.
    /// </summary>
    public IReadOnlyList<double> SoftQuantizationTemperatures { get; init; } = [];

    /// <summary>Also run the four attacks of <see cref="Attacks.AutoAttack"/>'s standard version on the prediction, first and
    /// in AutoAttack's order: <c>aa-apgd-ce/fused</c>, <c>aa-apgd-t/fused</c> (4 classes or more), <c>aa-fab-t/fused</c> and the
    /// gradient-free <c>aa-square/fused</c> (5,000 queries), which <see cref="GradientMaskingCheck"/> compares with the
    /// gradient attacks. With <see cref="RobustnessEvaluatorOptions.SurvivorsOnly"/> the four run exactly as AutoAttack runs
    /// them (each on the images still standing), so their cumulative accuracies are AutoAttack's own report, and the
    /// suite's attacks that follow show what AutoAttack missed. They cost tens of PGD-100 runs per image; off by default.</summary>
    public bool IncludeAutoAttack { get; init; }

    /// <summary>Throws when an option is out of range.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(SoftQuantizationTemperatures, nameof(SoftQuantizationTemperatures));
        foreach (var t in SoftQuantizationTemperatures)
            if (!(t > 0) || double.IsInfinity(t))
                throw new ArgumentOutOfRangeException(nameof(SoftQuantizationTemperatures), t, $"Every {nameof(SoftQuantizationTemperatures)} entry must be a finite number > 0, got {t}.");
        OptionChecks.AtLeast(Steps, 1, nameof(Steps));
        OptionChecks.Positive(StepFraction, nameof(StepFraction));
        OptionChecks.AtLeast(Restarts, 1, nameof(Restarts));
    }
}
