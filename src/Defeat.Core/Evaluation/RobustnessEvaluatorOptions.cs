using Defeat.Attacks;
using static TorchSharp.torch;

namespace Defeat.Evaluation;

/// <summary>Options of the <see cref="RobustnessEvaluator"/>.</summary>
public sealed record RobustnessEvaluatorOptions
{
    /// <summary>Attack radii in [0, 1] pixel units; the paper reports 1/255 and 4/255.</summary>
    public IReadOnlyList<double> Epsilons { get; init; } = [1.0 / 255, 4.0 / 255];

    /// <summary>Images per batch (the official evaluation uses 100).</summary>
    public int BatchSize { get; init; } = 100;

    /// <summary>Device each batch is moved to before it is classified and attacked (the model's device, e.g. CUDA); null leaves batches on the test set's device.</summary>
    public Device? Device { get; init; }

    /// <summary>The attack for a radius; DEFEAT's evaluation PGD (100 steps of eps/4, one random start) by default.</summary>
    public Func<double, IAdversarialAttack> AttackFactory { get; init; } =
        epsilon => new PgdAttack(PgdOptions.DefeatEvaluation(epsilon));

    /// <summary>
    /// Several attacks per radius, each on a named target (an adaptive evaluation: different losses, restarts and
    /// branches; see <see cref="AdaptiveAttackSuite"/>). When set it replaces <see cref="AttackFactory"/> applied to
    /// every target: results are keyed by attack name, and robust accuracy is the per-sample worst case over the list.
    /// Null (the default) keeps one <see cref="AttackFactory"/> attack per target.
    /// </summary>
    public IReadOnlyList<NamedAttack>? Attacks { get; init; }

    /// <summary>Throws when an option is out of range.</summary>
    public void Validate()
    {
        if (Epsilons is null || Epsilons.Count == 0)
            throw new ArgumentException("Epsilons is empty; expected at least one attack radius.", nameof(Epsilons));
        foreach (var e in Epsilons)
            if (!(e >= 0 && e <= 1))
                throw new ArgumentOutOfRangeException(nameof(Epsilons), e, "Expected every epsilon in [0, 1] (pixel units).");
        if (BatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "Expected at least 1.");
        ArgumentNullException.ThrowIfNull(AttackFactory);
        if (Attacks is not null)
        {
            if (Attacks.Count == 0)
                throw new ArgumentException("Attacks is empty; expected at least one attack, or null for AttackFactory on every target.", nameof(Attacks));
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var a in Attacks)
            {
                if (a is null || string.IsNullOrEmpty(a.Name) || string.IsNullOrEmpty(a.Target) || a.Factory is null)
                    throw new ArgumentException("Attacks holds an entry without a name, a target or a factory.", nameof(Attacks));
                if (!names.Add(a.Name))
                    throw new ArgumentException($"Attacks holds the name \"{a.Name}\" twice; expected unique names.", nameof(Attacks));
            }
        }
    }
}
