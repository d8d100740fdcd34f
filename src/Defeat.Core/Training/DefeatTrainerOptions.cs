using Defeat.Attacks;
using Defeat.Validation;
using static TorchSharp.torch;

namespace Defeat.Training;

/// <summary>Options of <see cref="DefeatTrainer"/>; the defaults are the paper's (method.md).</summary>
public sealed record DefeatTrainerOptions
{
    /// <summary>Passes over the few-shot training set.</summary>
    public int Epochs { get; init; } = 10;

    /// <summary>Images per step (32 in the paper).</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>SGD learning rate after the warm-up (0.002), decayed by a cosine over the epochs.</summary>
    public double LearningRate { get; init; } = 0.002;

    /// <summary>SGD momentum (0.9).</summary>
    public double Momentum { get; init; } = 0.9;

    /// <summary>SGD weight decay (5e-4).</summary>
    public double WeightDecay { get; init; } = 5e-4;

    /// <summary>Epochs at the constant warm-up learning rate before the cosine schedule (1).</summary>
    public int WarmupEpochs { get; init; } = 1;

    /// <summary>The warm-up learning rate (1e-5).</summary>
    public double WarmupLearningRate { get; init; } = 1e-5;

    /// <summary>The attack that makes the training images (only adversarial images are trained on);
    /// PGD with 3 steps of 2*eps/3 from a random start at eps = 4/255 by default.</summary>
    public PgdOptions Attack { get; init; } = PgdOptions.DefeatTraining(4.0 / 255);

    /// <summary>Augmentation of each batch before the attack.</summary>
    public Augmentation Augmentation { get; init; } = Augmentation.Flip;

    /// <summary>Seed of the batch order, augmentation and attack starts: same seed, same weights on CPU.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Folder for one checkpoint per epoch (atomic, resumable); null for none.</summary>
    public string? CheckpointDirectory { get; init; }

    /// <summary>Device each batch is moved to after augmentation (the model's device, e.g. CUDA); null leaves batches on the training set's device.</summary>
    public Device? Device { get; init; }

    /// <summary>Resume from the newest valid checkpoint in <see cref="CheckpointDirectory"/> when one exists.</summary>
    public bool Resume { get; init; } = true;

    /// <summary>Throws when an option is out of range.</summary>
    public void Validate()
    {
        OptionChecks.AtLeast(Epochs, 1, nameof(Epochs));
        OptionChecks.AtLeast(BatchSize, 1, nameof(BatchSize));
        OptionChecks.Positive(LearningRate, nameof(LearningRate));
        OptionChecks.InRange(Momentum, 0, 1, nameof(Momentum), maximumIncluded: false);
        OptionChecks.NonNegative(WeightDecay, nameof(WeightDecay));
        // Fewer warm-up epochs than epochs: the schedule needs at least one cosine epoch.
        OptionChecks.InRange(WarmupEpochs, 0, Epochs - 1, nameof(WarmupEpochs));
        OptionChecks.Positive(WarmupLearningRate, nameof(WarmupLearningRate));
        ArgumentNullException.ThrowIfNull(Attack);
        Attack.Validate();
    }

    /// <summary>The learning rate of epoch <paramref name="epoch"/> (0-based): constant warm-up, then a cosine from
    /// <see cref="LearningRate"/> toward 0 over all <see cref="Epochs"/>, as the official Dassl schedule.</summary>
    public double LearningRateAt(int epoch) => epoch < WarmupEpochs
        ? WarmupLearningRate
        : 0.5 * LearningRate * (1 + Math.Cos(Math.PI * epoch / Epochs));
}
