namespace Defeat.Attacks;

/// <summary>One attack of an <see cref="AutoAttack"/> run.</summary>
/// <param name="Name">Shown in the report (e.g. <c>apgd-ce</c>); unique in its list.</param>
/// <param name="Attack">An untargeted attack: called with the true labels, it succeeds when the prediction changes. Its
/// results must lie in AutoAttack's ball (<see cref="AutoAttackOptions.Epsilon"/>, <see cref="AutoAttackOptions.Norm"/>).</param>
/// <param name="MinimumClasses">The stage is skipped (with a warning in the report) on models with fewer classes,
/// e.g. 4 for APGD-T's targeted DLR loss.</param>
public sealed record AutoAttackStage(string Name, IAdversarialAttack Attack, int MinimumClasses = 2);
