using Defeat.Attacks;

namespace Defeat.Evaluation;

/// <summary>
/// One attack of an ensemble, as the <see cref="RobustnessEvaluator"/> runs it: a name for the
/// report, the attack target (logits) it aims at, and how to build it for a radius.
/// </summary>
/// <param name="Name">Shown in reports (a key of <see cref="EpsilonResult.RobustAccuracyByTarget"/>); unique in its list.</param>
/// <param name="Target">Name of one of the subject's attack targets (<see cref="EvaluationSubject.AttackTargets"/>).</param>
/// <param name="Factory">Builds the attack for a radius epsilon in [0, 1] pixel units.</param>
public sealed record NamedAttack(string Name, string Target, Func<double, IAdversarialAttack> Factory)
{
    /// <summary>The attack never uses gradients (a score-based search such as <see cref="SquareAttack"/>). The evaluator
    /// compares such attacks with the others per image: <see cref="GradientMaskingCheck"/>.</summary>
    public bool GradientFree { get; init; }
}
