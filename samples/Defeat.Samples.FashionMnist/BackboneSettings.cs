namespace Defeat.Samples.FashionMnist;

/// <summary>How the sample's small CLIP is made: contrastive pre-training, then TeCoA-style adversarial fine-tuning.</summary>
public sealed record BackboneSettings
{
    /// <summary>Width of both transformers.</summary>
    public int Width { get; init; } = 64;

    /// <summary>Blocks in each transformer.</summary>
    public int Layers { get; init; } = 3;

    /// <summary>Attention heads in each transformer.</summary>
    public int Heads { get; init; } = 2;

    /// <summary>Width of the joint image-text space.</summary>
    public int EmbedDim { get; init; } = 64;

    /// <summary>Images drawn from the pre-training pool (never the few-shot images).</summary>
    public int PretrainImages { get; init; } = 20_000;

    /// <summary>Epochs of contrastive image-caption training.</summary>
    public int ContrastiveEpochs { get; init; } = 4;

    /// <summary>Epochs of adversarial fine-tuning of the image tower (TeCoA).</summary>
    public int TecoaEpochs { get; init; } = 2;

    /// <summary>L-infinity radius of TeCoA's training attack, in [0, 1] pixel units.</summary>
    public double TecoaEpsilon { get; init; } = 4.0 / 255.0;

    /// <summary>PGD steps of TeCoA's training attack.</summary>
    public int TecoaSteps { get; init; } = 2;

    /// <summary>Images per step.</summary>
    public int BatchSize { get; init; } = 256;

    /// <summary>AdamW learning rate of the contrastive stage.</summary>
    public double ContrastiveLearningRate { get; init; } = 2e-3;

    /// <summary>AdamW learning rate of the TeCoA stage.</summary>
    public double TecoaLearningRate { get; init; } = 5e-4;

    /// <summary>Seed of every random choice.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>The settings of <c>pretrain --quick</c>: minutes, for a first look.</summary>
    public static BackboneSettings Quick() => new() { PretrainImages = 6_000, ContrastiveEpochs = 2, TecoaEpochs = 1 };
}
