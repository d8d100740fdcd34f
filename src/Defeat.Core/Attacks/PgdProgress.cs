namespace Defeat.Attacks;

/// <summary>Progress of a <see cref="PgdAttack"/> run, reported after each gradient step.</summary>
/// <param name="Restart">Zero-based restart being run.</param>
/// <param name="Step">Steps completed in this restart.</param>
/// <param name="Steps">Steps per restart.</param>
/// <param name="Restarts">Number of restarts.</param>
public readonly record struct PgdProgress(int Restart, int Step, int Steps, int Restarts);
