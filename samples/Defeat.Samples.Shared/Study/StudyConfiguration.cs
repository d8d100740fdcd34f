using Defeat.Model;
using Defeat.Backbones;
using Defeat.Prompting;
using Defeat.Fusion;
using Defeat.Quantization;
using Defeat.Shield;
using Defeat.Training;

namespace Defeat.Samples.Shared.Study;

/// <summary>
/// One named setting of a robustness study: which model is built and how it is trained. Everything it changes is
/// a library option, so a configuration is a few lines; the study's protocol (<see cref="StudyProtocol"/>) supplies
/// the rest.
/// </summary>
/// <param name="Name">Short, file-name-safe identifier (used in cell file names and on the command line).</param>
/// <param name="Description">What the setting is, in a sentence.</param>
public sealed record StudyConfiguration(string Name, string Description)
{
    /// <summary>Whether the model is prompt-tuned (false: evaluated as built, as zero-shot CLIP).</summary>
    public bool Train { get; init; } = true;

    /// <summary>Loss weights and which branches exist; <see cref="DefeatModelOptions.UseShield"/> follows <see cref="Shield"/>.</summary>
    public DefeatModelOptions Model { get; init; } = new();

    /// <summary>The shield for a backbone and a seed; null builds no shield (the APT-style and zero-shot baselines).</summary>
    public Func<IVisionLanguageBackbone, int, PerturbShieldOptions>? Shield { get; init; }

    /// <summary>Fusion of the clean and robust logits; null is the official logit average.</summary>
    public LogitFusionOptions? Fusion { get; init; }

    /// <summary>Overrides the protocol's epochs (e.g. the paper's 100).</summary>
    public int? Epochs { get; init; }

    /// <summary>Overrides the protocol's learning rate (e.g. the paper's 0.002).</summary>
    public double? LearningRate { get; init; }

    /// <summary>Overrides the protocol's shots per class (a scale point).</summary>
    public int? Shots { get; init; }

    /// <summary>FAP's prompts for a backbone and a seed: set, the configuration is a <see cref="FapModel"/> (deep multimodal
    /// prompts, FAP's loss) and <see cref="Model"/>, <see cref="Shield"/> and <see cref="Fusion"/> are not used.</summary>
    public Func<IDeepPromptBackbone, int, FapPromptLearnerOptions>? Fap { get; init; }
}

/// <summary>The configurations a study can name. The baseline every paired comparison is made against is <see cref="Baseline"/>.</summary>
public static class StudyConfigurations
{
    /// <summary>Name of the APT-style baseline (learned prompts, adversarial training, no shield, no text regulariser).</summary>
    public const string Baseline = "apt";

    /// <summary>Name of the frozen backbone with its hand-written prompts: the floor a defence must beat, and the second
    /// baseline of the summary (a trained baseline can fail on a seed; the backbone cannot).</summary>
    public const string Backbone = "zero-shot";

    /// <summary>The official shield (half the feature width, 512 codes, gradient-trained codebook at U(-1/512, 1/512)).</summary>
    public static PerturbShieldOptions Official(IVisionLanguageBackbone backbone) => RobustnessStudy.OfficialShield(backbone);

    /// <summary>The official shield changed by <paramref name="shield"/>, with a quantizer changed by <paramref name="quantizer"/>
    /// (sized to the shield by <see cref="PerturbShieldOptions.WithQuantizer"/>; its seed is the cell's).</summary>
    public static Func<IVisionLanguageBackbone, int, PerturbShieldOptions> Shielded(
        Func<PerturbShieldOptions, PerturbShieldOptions>? shield = null, Func<VectorQuantizerOptions, VectorQuantizerOptions>? quantizer = null) =>
        (backbone, seed) => (shield?.Invoke(Official(backbone)) ?? Official(backbone))
            .WithQuantizer(q => quantizer is null ? q with { Seed = (ulong)seed } : quantizer(q with { Seed = (ulong)seed }));

    /// <summary><see cref="Shielded"/> with k-means initialisation on the first batch and dead-code restarts (the codebook
    /// still trained by its gradient) under the other changes.</summary>
    public static Func<IVisionLanguageBackbone, int, PerturbShieldOptions> KMeansDead(
        Func<PerturbShieldOptions, PerturbShieldOptions>? shield = null, Func<VectorQuantizerOptions, VectorQuantizerOptions>? quantizer = null) =>
        Shielded(shield, q => (quantizer ?? (x => x))(RobustnessStudy.AntiCollapse(q)));

    /// <summary>Every configuration, in the order the summary lists them.</summary>
    public static IReadOnlyList<StudyConfiguration> All { get; } =
    [
        new("zero-shot", "Frozen CLIP with the hand-written prompts; nothing trained.")
        {
            Train = false, Model = new DefeatModelOptions { UseShield = false, UseLearnedPrompts = false },
        },
        new(Baseline, "APT-style: learned prompts trained on adversarial images, no shield, no text regulariser.")
        {
            Model = new DefeatModelOptions { UseShield = false, TextRegularizationWeight = 0 },
        },
        new("apt-paper-schedule", "APT-style with the paper's schedule (lr 0.002, 100 epochs): the baseline of the *-paper-schedule cells.")
        {
            Model = new DefeatModelOptions { UseShield = false, TextRegularizationWeight = 0 }, LearningRate = 0.002, Epochs = 100,
        },
        new("fap", "FAP: deep multimodal prompts (2 context tokens, prompt depth min(9, blocks)) with FAP's loss, trained as the others.")
        {
            Fap = (backbone, seed) => RobustnessStudy.Fap(backbone, seed),
        },
        new("official", "DEFEAT with the official settings.") { Shield = Shielded() },
        new("official-paper-schedule", "DEFEAT, official settings, the paper's schedule (lr 0.002, 100 epochs).")
        {
            Shield = Shielded(), LearningRate = 0.002, Epochs = 100,
        },
        new("kmeans-dead", "k-means codebook init + dead-code restarts, gradient-trained codebook (no EMA).") { Shield = KMeansDead() },
        new("kmeans-dead-paper-schedule", "kmeans-dead with the paper's schedule (lr 0.002, 100 epochs).")
        {
            Shield = KMeansDead(), LearningRate = 0.002, Epochs = 100,
        },
        new("kmeans-dead-ema", "kmeans-dead with an EMA codebook (the first wave's anti-collapse preset).")
        {
            Shield = KMeansDead(quantizer: q => q with { CodebookUpdate = CodebookUpdate.ExponentialMovingAverage }),
        },
        new("cosine", "kmeans-dead with a cosine codebook (unit codewords, nearest by angle).")
        {
            Shield = KMeansDead(quantizer: q => q with { Distance = QuantizerDistance.Cosine }),
        },
        new("learnable-fusion", "kmeans-dead with a learned fusion weight alpha.")
        {
            Shield = KMeansDead(), Fusion = new LogitFusionOptions { Mode = FusionMode.LearnableAlpha },
        },
        new("adaptive-fusion", "kmeans-dead with per-image confidence-adaptive fusion.")
        {
            Shield = KMeansDead(), Fusion = new LogitFusionOptions { Mode = FusionMode.Adaptive },
        },
        new("scale-init", "Codebook rescaled on the first batch to the encoder outputs' mean norm, dead-code restarts (no k-means).")
        {
            Shield = Shielded(quantizer: q => q with { FirstBatchInit = FirstBatchInit.MatchInputNorm, DeadCodeThreshold = 0.01 }),
        },
        new("sample-init", "Codewords drawn from the first batch's encoder outputs, dead-code restarts (no k-means).")
        {
            Shield = Shielded(quantizer: q => q with { FirstBatchInit = FirstBatchInit.SampleInputs, DeadCodeThreshold = 0.01 }),
        },
        new("l2-cosine", "L2-normalised encoder output with a cosine codebook (k-means init, dead-code restarts).")
        {
            Shield = KMeansDead(s => s with { LatentNormalization = LatentNormalization.L2 }, q => q with { Distance = QuantizerDistance.Cosine }),
        },
        new("layernorm", "LayerNorm on the encoder output before a Euclidean codebook (k-means init, dead-code restarts).")
        {
            Shield = KMeansDead(s => s with { LatentNormalization = LatentNormalization.LayerNorm }),
        },
        new("lowdim-8", "Codes looked up in a learned 8-dimensional projection of the latent (k-means init, dead-code restarts), lr 0.005.")
        {
            // At the sample's lr 0.02 its loss went to infinity in epoch 10 (docs/reproduction.md); a quarter of it.
            Shield = KMeansDead(s => s with { CodeDim = 8 }), LearningRate = 0.005,
        },
        new("rotation", "kmeans-dead with the rotation trick in place of the plain straight-through estimator.")
        {
            Shield = KMeansDead(quantizer: q => q with { GradientEstimator = GradientEstimator.RotationTrick }),
        },
        new("consistency-1", "kmeans-dead with the code-consistency loss (adversarial latents pulled to the clean image's codewords), weight 1.")
        {
            Shield = KMeansDead(), Model = new DefeatModelOptions { CodeConsistencyWeight = 1 },
        },
        new("consistency-10", "kmeans-dead with the code-consistency loss, weight 10.")
        {
            Shield = KMeansDead(), Model = new DefeatModelOptions { CodeConsistencyWeight = 10 },
        },
        new("kmeans-dead-64shot", "kmeans-dead trained on 64 shots per class (a scale point).") { Shield = KMeansDead(), Shots = 64 },
        new("apt-64shot", "APT-style trained on 64 shots per class (the baseline of the scale point).")
        {
            Model = new DefeatModelOptions { UseShield = false, TextRegularizationWeight = 0 }, Shots = 64,
        },
    ];

    /// <summary>Finds configurations by name, in the order given.</summary>
    /// <param name="names">Names from <see cref="All"/>.</param>
    /// <exception cref="ArgumentException">An unknown name (the message lists the known ones).</exception>
    public static IReadOnlyList<StudyConfiguration> Find(IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        var byName = All.ToDictionary(c => c.Name, StringComparer.Ordinal);
        return names.Select(n => byName.TryGetValue(n, out var c) ? c
            : throw new ArgumentException($"Unknown study configuration \"{n}\"; expected one of {string.Join(", ", byName.Keys)}.", nameof(names))).ToList();
    }
}
