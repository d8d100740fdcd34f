using Defeat.Attacks;
using Defeat.Validation;
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

    /// <summary>
    /// Attack only what is still standing, as AutoAttack does: images the model gets wrong clean are not attacked, and
    /// each attack of the list runs only on the images every earlier attack left classified correctly. The worst-case
    /// robust accuracy is the same quantity at a fraction of the cost; the accuracy reported per attack is then
    /// cumulative (after that attack and every earlier one), not the attack's alone. Off by default.
    /// </summary>
    public bool SurvivorsOnly { get; init; }

    /// <summary>Throws when an option is out of range.</summary>
    public void Validate()
    {
        if (Epsilons is null || Epsilons.Count == 0)
            throw new ArgumentException($"{nameof(Epsilons)} must hold at least one attack radius, got none.", nameof(Epsilons));
        foreach (var e in Epsilons)
            OptionChecks.InRange(e, 0, 1, nameof(Epsilons));
        OptionChecks.AtLeast(BatchSize, 1, nameof(BatchSize));
        ArgumentNullException.ThrowIfNull(AttackFactory);
        if (Attacks is not null)
        {
            if (Attacks.Count == 0)
                throw new ArgumentException($"{nameof(Attacks)} must hold at least one attack (or be null for AttackFactory on every target), got none.", nameof(Attacks));
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var a in Attacks)
            {
                if (a is null || string.IsNullOrEmpty(a.Name) || string.IsNullOrEmpty(a.Target) || a.Factory is null)
                    throw new ArgumentException($"{nameof(Attacks)} must hold entries with a name, a target and a factory, got one without.", nameof(Attacks));
                if (!names.Add(a.Name))
                    throw new ArgumentException($"{nameof(Attacks)} must have unique names, got \"{a.Name}\" twice.", nameof(Attacks));
            }
        }
    }
}
