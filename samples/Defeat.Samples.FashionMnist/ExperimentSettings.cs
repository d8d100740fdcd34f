using Defeat.Validation;

namespace Defeat.Samples.FashionMnist;

/// <summary>The sample's experiment: what is trained and how hard it is attacked.</summary>
public sealed record ExperimentSettings
{
    /// <summary>Training images per class (the paper's 16-shot setting).</summary>
    public int Shots { get; init; } = 16;

    /// <summary>Epochs of adversarial prompt tuning (APT-style and DEFEAT).</summary>
    public int Epochs { get; init; } = 20;

    /// <summary>SGD learning rate of prompt tuning. The paper's 0.002 (with momentum 0.9, weight decay 5e-4) barely
    /// moves the prompts and the VQ-VAE in the 100 steps that 160 images give; 0.02 is the sample's default (measured in
    /// docs/reproduction.md); 0.1 diverged.</summary>
    public double LearningRate { get; init; } = 0.02;

    /// <summary>Test images per class (a stratified subset of the 10,000 test images).</summary>
    public int TestPerClass { get; init; } = 20;

    /// <summary>Steps of the evaluation PGD (the paper: 100, step eps/4, one random start).</summary>
    public int PgdSteps { get; init; } = 20;

    /// <summary>The radii of the table, in [0, 1] pixel units.</summary>
    public IReadOnlyList<double> Epsilons { get; init; } = [1.0 / 255, 4.0 / 255];

    /// <summary>The radii of the robust-accuracy-vs-epsilon curve.</summary>
    public IReadOnlyList<double> CurveEpsilons { get; init; } = [0, 1.0 / 255, 2.0 / 255, 4.0 / 255, 8.0 / 255, 16.0 / 255];

    /// <summary>The step counts of the robust-accuracy-vs-steps curve (at 4/255).</summary>
    public IReadOnlyList<int> CurveSteps { get; init; } = [1, 3, 10, 20];

    /// <summary>Radius of the training attack (PGD, 3 steps of 2*eps/3).</summary>
    public double TrainEpsilon { get; init; } = 4.0 / 255;

    /// <summary>Also run the attacks that know the defence (margin and DLR losses, restarts, each branch; see
    /// <c>AdaptiveAttackSuite</c>) at the largest radius, and the sanity checks (large radii, an unbounded attack).</summary>
    public bool Adaptive { get; init; }

    /// <summary>Also run AutoAttack's four attacks (APGD-CE, APGD-T, FAB-T, Square) before the adaptive suite, every attack on
    /// the images still standing; the table then says where gradient masking is suspected. Implies <see cref="Adaptive"/>.</summary>
    public bool AutoAttack { get; init; }

    /// <summary>Seed of every random choice.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>The documented reproduction (docs/reproduction.md): 30 test images per class, PGD-100, longer curves,
    /// the adaptive attacks and the sanity checks; about half an hour on 2 cores.</summary>
    public static ExperimentSettings Full() => new()
    {
        TestPerClass = 30,
        PgdSteps = 100,
        CurveSteps = [1, 3, 10, 30, 100],
        Adaptive = true,
    };

    /// <summary>Throws when a setting is out of range, naming it.</summary>
    public void Validate()
    {
        OptionChecks.InRange(Shots, 1, Experiment.ReservePerClass, nameof(Shots)); // the reserve holds 100 per class
        OptionChecks.AtLeast(Epochs, 2, nameof(Epochs)); // one warm-up epoch, then the cosine schedule
        OptionChecks.InRange(TestPerClass, 1, 1000, nameof(TestPerClass)); // the test split has 1000 per class
        OptionChecks.Positive(LearningRate, nameof(LearningRate));
        OptionChecks.AtLeast(PgdSteps, 1, nameof(PgdSteps));
        if (Epsilons.Count == 0)
            throw new ArgumentOutOfRangeException(nameof(Epsilons), $"{nameof(Epsilons)} must hold at least one radius, got none.");
        foreach (var e in Epsilons) OptionChecks.InRange(e, 0, 1, nameof(Epsilons), minimumIncluded: false);
    }
}
