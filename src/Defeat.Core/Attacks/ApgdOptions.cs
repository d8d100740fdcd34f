namespace Defeat.Attacks;

/// <summary>
/// Options of <see cref="ApgdAttack"/> (Auto-PGD, Croce and Hein, 2020). The defaults are the published ones
/// (100 iterations, rho 0.75, momentum 0.75, one random start), except the radius, which defaults to
/// DEFEAT's 4/255.
/// </summary>
public sealed record ApgdOptions
{
    /// <summary>Radius of the allowed perturbation ball, in [0, 1] pixel units.</summary>
    public double Epsilon { get; init; } = 4.0 / 255.0;

    /// <summary>The ball: L-infinity or L2.</summary>
    public AttackNorm Norm { get; init; } = AttackNorm.LInf;

    /// <summary>Gradient steps per run (the step size and checkpoints scale with it; see <see cref="ApgdAttack.Checkpoints"/>).</summary>
    public int Iterations { get; init; } = 100;

    /// <summary>Runs per image; each restart attacks only the images no earlier run has fooled.</summary>
    public int Restarts { get; init; } = 1;

    /// <summary>The objective: <see cref="AttackLoss.CrossEntropy"/> (APGD-CE) or <see cref="AttackLoss.Dlr"/> (APGD-DLR; 3 classes or more, 4 when targeted).</summary>
    public AttackLoss Loss { get; init; } = AttackLoss.CrossEntropy;

    /// <summary>If true the labels are target classes the attack steers toward; otherwise true classes it steers away from.</summary>
    public bool Targeted { get; init; }

    /// <summary>The step is halved at a checkpoint when at most this fraction of the steps since the last one raised the loss (the paper's rho).</summary>
    public double Rho { get; init; } = 0.75;

    /// <summary>Weight of the new step against the previous one (the paper's alpha): <c>x &lt;- x + a (z - x) + (1 - a)(x - x_prev)</c>.</summary>
    public double Momentum { get; init; } = 0.75;

    /// <summary>Start from a random point of the ball's surface (true, as published) or from the clean image.</summary>
    public bool RandomStart { get; init; } = true;

    /// <summary>Gradients averaged per step (expectation over transformation, for randomised defences); 1 for deterministic models.</summary>
    public int EotIterations { get; init; } = 1;

    /// <summary>Seed of the random starts: the same seed gives the same result on CPU.</summary>
    public ulong Seed { get; init; }

    /// <summary>Switch a module to eval mode while attacking it (restored afterwards).</summary>
    public bool EvalModeDuringAttack { get; init; } = true;

    /// <summary>Checks every option; throws <see cref="ArgumentOutOfRangeException"/> naming the first bad one.</summary>
    public void Validate()
    {
        ApgdSearch.Check(Epsilon, Norm, Iterations, Restarts, Rho, Momentum, EotIterations);
        if (!Enum.IsDefined(Loss))
            throw new ArgumentOutOfRangeException(nameof(Loss), Loss, $"{nameof(Loss)} must be CrossEntropy, Margin or Dlr, got {Loss}.");
    }
}
