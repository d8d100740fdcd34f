namespace Defeat.Attacks;

/// <summary>Progress of an <see cref="AutoAttack"/> run, reported after each batch of each attack.</summary>
/// <param name="Stage">Name of the attack running.</param>
/// <param name="StageIndex">Zero-based position of the attack.</param>
/// <param name="Stages">Number of attacks.</param>
/// <param name="Done">Images this attack has finished.</param>
/// <param name="ToAttack">Images this attack attacks (the survivors of the previous ones).</param>
/// <param name="Robust">Images still robust overall.</param>
/// <param name="Images">Images evaluated.</param>
public readonly record struct AutoAttackProgress(string Stage, int StageIndex, int Stages, long Done, long ToAttack, long Robust, long Images);
