namespace Defeat.Attacks;

/// <summary>Which attacks <see cref="AutoAttack"/> runs, in order.</summary>
public enum AutoAttackVersion
{
    /// <summary>
    /// The standard evaluation (RobustBench's): APGD-CE, APGD-T (9 targets), FAB-T (9 targets) and Square
    /// (5,000 queries), each on the images still robust. For deterministic models.
    /// </summary>
    Standard,

    /// <summary>
    /// For randomised defences: APGD-CE and APGD-DLR, each averaging 20 gradients per step (expectation over
    /// transformation).
    /// </summary>
    Rand,

    /// <summary>The attacks listed in <see cref="AutoAttackOptions.Stages"/>.</summary>
    Custom,
}
