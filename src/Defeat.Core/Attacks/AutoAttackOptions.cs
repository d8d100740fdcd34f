namespace Defeat.Attacks;

/// <summary>
/// Options of <see cref="AutoAttack"/>. The defaults are the published configuration of AutoAttack's versions
/// (Croce and Hein, ICML 2020; fra31/auto-attack), except the radius, which defaults to DEFEAT's 4/255.
/// </summary>
public sealed record AutoAttackOptions
{
    /// <summary>Radius of the allowed perturbation ball, in [0, 1] pixel units (8/255 L-inf and 0.5 L2 on CIFAR-10 in RobustBench).</summary>
    public double Epsilon { get; init; } = 4.0 / 255.0;

    /// <summary>The ball: L-infinity or L2.</summary>
    public AttackNorm Norm { get; init; } = AttackNorm.LInf;

    /// <summary>Which attacks run: <see cref="AutoAttackVersion.Standard"/>, <see cref="AutoAttackVersion.Rand"/> or the <see cref="Stages"/> list.</summary>
    public AutoAttackVersion Version { get; init; } = AutoAttackVersion.Standard;

    /// <summary>The attacks of <see cref="AutoAttackVersion.Custom"/>, in order; must be null for the other versions.
    /// <see cref="AutoAttack.Stages"/> gives the published lists to start from.</summary>
    public IReadOnlyList<AutoAttackStage>? Stages { get; init; }

    /// <summary>Seed of every attack's randomness: the same seed gives the same result on CPU.</summary>
    public ulong Seed { get; init; }

    /// <summary>Images per forward pass: the survivors of each attack are attacked this many at a time (250 in the reference).</summary>
    public int BatchSize { get; init; } = 250;

    /// <summary>Iterations of APGD-CE, APGD-T, APGD-DLR and FAB-T.</summary>
    public int Iterations { get; init; } = 100;

    /// <summary>Target classes of APGD-T and FAB-T (fewer when the model has fewer other classes).</summary>
    public int TargetClasses { get; init; } = 9;

    /// <summary>Query budget of the Square attack per image.</summary>
    public int SquareQueries { get; init; } = 5000;

    /// <summary>Gradients averaged per step in the <see cref="AutoAttackVersion.Rand"/> version (expectation over transformation).</summary>
    public int EotIterations { get; init; } = 20;

    /// <summary>Switch a module to eval mode while attacking it (restored afterwards). Leave it on unless the defence's
    /// randomness lives in training-mode layers you mean to attack.</summary>
    public bool EvalModeDuringAttack { get; init; } = true;

    /// <summary>Checks every option; throws <see cref="ArgumentOutOfRangeException"/> or <see cref="ArgumentException"/> naming the first bad one.</summary>
    public void Validate()
    {
        if (!(Epsilon >= 0) || double.IsInfinity(Epsilon))
            throw new ArgumentOutOfRangeException(nameof(Epsilon), Epsilon, $"{nameof(Epsilon)} must be a finite number >= 0, got {Epsilon}.");
        if (!Enum.IsDefined(Norm))
            throw new ArgumentOutOfRangeException(nameof(Norm), Norm, $"{nameof(Norm)} must be LInf or L2, got {Norm}.");
        if (!Enum.IsDefined(Version))
            throw new ArgumentOutOfRangeException(nameof(Version), Version, $"{nameof(Version)} must be Standard, Rand or Custom, got {Version}.");
        if (BatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, $"{nameof(BatchSize)} must be >= 1, got {BatchSize}.");
        if (Iterations < 0)
            throw new ArgumentOutOfRangeException(nameof(Iterations), Iterations, $"{nameof(Iterations)} must be >= 0, got {Iterations}.");
        if (TargetClasses < 1)
            throw new ArgumentOutOfRangeException(nameof(TargetClasses), TargetClasses, $"{nameof(TargetClasses)} must be >= 1, got {TargetClasses}.");
        if (SquareQueries < 2)
            throw new ArgumentOutOfRangeException(nameof(SquareQueries), SquareQueries, $"{nameof(SquareQueries)} must be >= 2, got {SquareQueries}.");
        if (EotIterations < 1)
            throw new ArgumentOutOfRangeException(nameof(EotIterations), EotIterations, $"{nameof(EotIterations)} must be >= 1, got {EotIterations}.");
        if (Version == AutoAttackVersion.Custom)
        {
            if (Stages is null || Stages.Count == 0)
                throw new ArgumentException("Version is Custom but Stages is empty; expected at least one attack.", nameof(Stages));
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var stage in Stages)
            {
                if (stage is null || string.IsNullOrEmpty(stage.Name) || stage.Attack is null)
                    throw new ArgumentException("Stages holds an entry without a name or an attack.", nameof(Stages));
                if (stage.MinimumClasses < 1)
                    throw new ArgumentOutOfRangeException(nameof(Stages), stage.MinimumClasses, $"Stage \"{stage.Name}\" has MinimumClasses {stage.MinimumClasses}; expected >= 1.");
                if (!names.Add(stage.Name))
                    throw new ArgumentException($"Stages holds the name \"{stage.Name}\" twice; expected unique names.", nameof(Stages));
            }
        }
        else if (Stages is not null)
        {
            throw new ArgumentException($"Stages is set but Version is {Version}; set Version = Custom to run your own list.", nameof(Stages));
        }
    }
}
