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
    }
}
