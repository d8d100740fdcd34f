namespace Defeat.Attacks;

/// <summary>
/// Options of <see cref="FabAttack"/> (targeted FAB, Croce and Hein, ICML 2020). The defaults are the published ones
/// as AutoAttack's standard version runs FAB-T (100 iterations, 9 target classes, one run per target, alpha_max 0.1,
/// eta 1.05, beta 0.9), except the radius, which defaults to DEFEAT's 4/255.
/// </summary>
public sealed record FabOptions
{
    /// <summary>Radius of the allowed ball, in [0, 1] pixel units: an adversarial image counts only if its perturbation is within it.</summary>
    public double Epsilon { get; init; } = 4.0 / 255.0;

    /// <summary>The norm FAB minimises: L-infinity or L2.</summary>
    public AttackNorm Norm { get; init; } = AttackNorm.LInf;

    /// <summary>Projection steps per run.</summary>
    public int Iterations { get; init; } = 100;

    /// <summary>How many of the highest-scoring other classes are tried as targets, in order (fewer when the model has fewer other classes).</summary>
    public int TargetClasses { get; init; } = 9;

    /// <summary>Runs per target class: the first from the clean image, each further one from a random point at half the radius.</summary>
    public int Restarts { get; init; } = 1;

    /// <summary>Upper bound of the bias toward the projection of the clean image (the paper's alpha_max).</summary>
    public double AlphaMax { get; init; } = 0.1;

    /// <summary>Overshoot of each projection step past the linearised boundary (the paper's eta).</summary>
    public double Eta { get; init; } = 1.05;

    /// <summary>Backward step: after a success the iterate moves to <c>x0 + beta (x - x0)</c> (the paper's beta).</summary>
    public double Beta { get; init; } = 0.9;

    /// <summary>Seed of the random starts of restarts after the first: the same seed gives the same result on CPU.</summary>
    public ulong Seed { get; init; }

    /// <summary>Switch a module to eval mode while attacking it (restored afterwards).</summary>
    public bool EvalModeDuringAttack { get; init; } = true;

    /// <summary>Checks every option; throws <see cref="ArgumentOutOfRangeException"/> naming the first bad one.</summary>
    public void Validate()
    {
        if (!(Epsilon >= 0) || double.IsInfinity(Epsilon))
            throw new ArgumentOutOfRangeException(nameof(Epsilon), Epsilon, $"{nameof(Epsilon)} must be a finite number >= 0, got {Epsilon}.");
        if (!Enum.IsDefined(Norm))
            throw new ArgumentOutOfRangeException(nameof(Norm), Norm, $"{nameof(Norm)} must be LInf or L2, got {Norm}.");
        if (Iterations < 0)
            throw new ArgumentOutOfRangeException(nameof(Iterations), Iterations, $"{nameof(Iterations)} must be >= 0, got {Iterations}.");
        if (TargetClasses < 1)
            throw new ArgumentOutOfRangeException(nameof(TargetClasses), TargetClasses, $"{nameof(TargetClasses)} must be >= 1, got {TargetClasses}.");
        if (Restarts < 1)
            throw new ArgumentOutOfRangeException(nameof(Restarts), Restarts, $"{nameof(Restarts)} must be >= 1, got {Restarts}.");
        if (!(AlphaMax >= 0 && AlphaMax <= 1))
            throw new ArgumentOutOfRangeException(nameof(AlphaMax), AlphaMax, $"{nameof(AlphaMax)} must be in [0, 1], got {AlphaMax}.");
        if (!(Eta >= 1) || double.IsInfinity(Eta))
            throw new ArgumentOutOfRangeException(nameof(Eta), Eta, $"{nameof(Eta)} must be a finite number >= 1, got {Eta}.");
        if (!(Beta > 0 && Beta <= 1))
            throw new ArgumentOutOfRangeException(nameof(Beta), Beta, $"{nameof(Beta)} must be in (0, 1], got {Beta}.");
    }
}
