namespace Defeat.Attacks;

/// <summary>
/// Options of <see cref="ApgdTargetedAttack"/> (APGD-T). The defaults are AutoAttack's for its standard version
/// (100 iterations, 9 target classes, one run per target), except the radius, which defaults to DEFEAT's 4/255.
/// </summary>
public sealed record ApgdTargetedOptions
{
    /// <summary>Radius of the allowed perturbation ball, in [0, 1] pixel units.</summary>
    public double Epsilon { get; init; } = 4.0 / 255.0;

    /// <summary>The ball: L-infinity or L2.</summary>
    public AttackNorm Norm { get; init; } = AttackNorm.LInf;

    /// <summary>Gradient steps per run.</summary>
    public int Iterations { get; init; } = 100;

    /// <summary>How many of the highest-scoring other classes are tried as targets, in order (fewer when the model has fewer other classes).</summary>
    public int TargetClasses { get; init; } = 9;

    /// <summary>Runs per target class; each attacks only the images still not fooled.</summary>
    public int Restarts { get; init; } = 1;

    /// <summary>The step-halving threshold (the paper's rho); see <see cref="ApgdOptions.Rho"/>.</summary>
    public double Rho { get; init; } = 0.75;

    /// <summary>Momentum of the steps; see <see cref="ApgdOptions.Momentum"/>.</summary>
    public double Momentum { get; init; } = 0.75;

    /// <summary>Start each run from a random point of the ball's surface (true, as published) or from the clean image.</summary>
    public bool RandomStart { get; init; } = true;

    /// <summary>Gradients averaged per step (expectation over transformation); 1 for deterministic models.</summary>
    public int EotIterations { get; init; } = 1;

    /// <summary>Seed of the random starts: the same seed gives the same result on CPU.</summary>
    public ulong Seed { get; init; }

    /// <summary>Switch a module to eval mode while attacking it (restored afterwards).</summary>
    public bool EvalModeDuringAttack { get; init; } = true;

    /// <summary>Checks every option; throws <see cref="ArgumentOutOfRangeException"/> naming the first bad one.</summary>
    public void Validate()
    {
        ApgdSearch.Check(Epsilon, Norm, Iterations, Restarts, Rho, Momentum, EotIterations);
        if (TargetClasses < 1)
            throw new ArgumentOutOfRangeException(nameof(TargetClasses), TargetClasses, $"{nameof(TargetClasses)} must be >= 1, got {TargetClasses}.");
    }
}
