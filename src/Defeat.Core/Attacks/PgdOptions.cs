using Defeat.Validation;

namespace Defeat.Attacks;

/// <summary>Options of <see cref="PgdAttack"/> (projected gradient descent in pixel space).</summary>
public sealed record PgdOptions
{
    /// <summary>Radius of the allowed perturbation ball, in [0, 1] pixel units (4/255 in DEFEAT).</summary>
    public double Epsilon { get; init; } = 4.0 / 255.0;

    /// <summary>Length of one ascent step (L-inf: per pixel; L2: per image).</summary>
    public double StepSize { get; init; } = 1.0 / 255.0;

    /// <summary>Number of gradient steps per restart.</summary>
    public int Steps { get; init; } = 10;

    /// <summary>The ball: L-infinity or L2.</summary>
    public AttackNorm Norm { get; init; } = AttackNorm.LInf;

    /// <summary>Start each restart from a uniform random point of the ball (true) or from the clean image (false).</summary>
    public bool RandomStart { get; init; } = true;

    /// <summary>Independent runs; per sample the worst case is kept (a success first, then the highest loss).</summary>
    public int Restarts { get; init; } = 1;

    /// <summary>The objective the attack maximises.</summary>
    public AttackLoss Loss { get; init; } = AttackLoss.CrossEntropy;

    /// <summary>If true the labels are target classes the attack steers toward; otherwise true classes it steers away from.</summary>
    public bool Targeted { get; init; }

    /// <summary>Seed of the random starts: the same seed gives the same result on CPU.</summary>
    public ulong Seed { get; init; }

    /// <summary>Switch a module to eval mode while attacking it (restored afterwards), so training-time side effects do not fire.</summary>
    public bool EvalModeDuringAttack { get; init; } = true;

    /// <summary>The attack DEFEAT trains on: L-inf, 3 steps of 2*eps/3 from a uniform random start, cross-entropy.</summary>
    /// <param name="epsilon">Ball radius in [0, 1] pixel units.</param>
    public static PgdOptions DefeatTraining(double epsilon) =>
        new() { Epsilon = epsilon, StepSize = 2.0 * epsilon / 3.0, Steps = 3, RandomStart = true };

    /// <summary>The attack DEFEAT is evaluated with: L-inf, 100 steps of eps/4, one random start, cross-entropy.</summary>
    /// <param name="epsilon">Ball radius in [0, 1] pixel units.</param>
    public static PgdOptions DefeatEvaluation(double epsilon) =>
        new() { Epsilon = epsilon, StepSize = epsilon / 4.0, Steps = 100, RandomStart = true, Restarts = 1 };

    /// <summary>Checks every option; throws <see cref="ArgumentOutOfRangeException"/> naming the first bad one.</summary>
    public void Validate()
    {
        OptionChecks.NonNegative(Epsilon, nameof(Epsilon));
        OptionChecks.NonNegative(StepSize, nameof(StepSize));
        OptionChecks.AtLeast(Steps, 0, nameof(Steps));
        OptionChecks.AtLeast(Restarts, 1, nameof(Restarts));
        OptionChecks.Defined(Norm, nameof(Norm));
        OptionChecks.Defined(Loss, nameof(Loss));
    }
}
