namespace Defeat.Attacks;

/// <summary>
/// Options of <see cref="SquareAttack"/> (Andriushchenko et al., ECCV 2020). The defaults are the published ones
/// (5,000 queries, p_init 0.8, margin loss, one run, schedule rescaled to the budget), except the radius, which
/// defaults to DEFEAT's 4/255. AutoAttack's standard version runs it with <see cref="RescaleSchedule"/> off.
/// </summary>
public sealed record SquareOptions
{
    /// <summary>Radius of the allowed perturbation ball, in [0, 1] pixel units.</summary>
    public double Epsilon { get; init; } = 4.0 / 255.0;

    /// <summary>The ball: L-infinity or L2.</summary>
    public AttackNorm Norm { get; init; } = AttackNorm.LInf;

    /// <summary>
    /// Model queries allowed per image and run, every forward pass that includes the image counted (the check of the
    /// clean image in the first run, the random start, and one per search step). At least 2.
    /// </summary>
    public int Queries { get; init; } = 5000;

    /// <summary>Fraction of the image's pixels the first squares cover (the paper's p_init); the schedule shrinks it.</summary>
    public double InitialFraction { get; init; } = 0.8;

    /// <summary>
    /// Stretch the published schedule of the square size (defined over 10,000 steps) to <see cref="Queries"/> (true,
    /// as the paper does), or read it at the raw step index (false, as AutoAttack's standard version does).
    /// </summary>
    public bool RescaleSchedule { get; init; } = true;

    /// <summary>Independent runs; each attacks only the images no earlier run has fooled.</summary>
    public int Restarts { get; init; } = 1;

    /// <summary>The score the search lowers: <see cref="AttackLoss.Margin"/> (published) or <see cref="AttackLoss.CrossEntropy"/>.</summary>
    public AttackLoss Loss { get; init; } = AttackLoss.Margin;

    /// <summary>If true the labels are target classes the attack steers toward; otherwise true classes it steers away from.</summary>
    public bool Targeted { get; init; }

    /// <summary>Seed of the random squares: the same seed gives the same result on CPU.</summary>
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
        if (Queries < 2)
            throw new ArgumentOutOfRangeException(nameof(Queries), Queries, $"{nameof(Queries)} must be >= 2 (the clean check and the random start), got {Queries}.");
        if (!(InitialFraction > 0 && InitialFraction <= 1))
            throw new ArgumentOutOfRangeException(nameof(InitialFraction), InitialFraction, $"{nameof(InitialFraction)} must be in (0, 1], got {InitialFraction}.");
        if (Restarts < 1)
            throw new ArgumentOutOfRangeException(nameof(Restarts), Restarts, $"{nameof(Restarts)} must be >= 1, got {Restarts}.");
        if (Loss is not (AttackLoss.Margin or AttackLoss.CrossEntropy))
            throw new ArgumentOutOfRangeException(nameof(Loss), Loss, $"{nameof(Loss)} must be Margin or CrossEntropy, got {Loss}.");
    }
}
