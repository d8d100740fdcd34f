using Defeat.Validation;

namespace Defeat.Quantization;

/// <summary>
/// Settings of a <see cref="VectorQuantizer"/>. The defaults are the official DEFEAT quantizer:
/// 512 codes of width 256, Euclidean distance, codebook trained by gradient, initialised
/// <c>U(-1/K, 1/K)</c>.
/// </summary>
/// <remarks>
/// DEFEAT's official VQ-VAE loss is <c>0.5 * reconstruction + 0.1 * codebook + 0.025 * commitment</c>
/// (see docs/method.md). This quantizer returns the unweighted codebook loss and the commitment loss
/// scaled by <see cref="CommitmentWeight"/> (0.25); the PerturbShield weighs both by its
/// <c>CodebookWeight</c> (0.1), which gives DEFEAT's 0.025 for the commitment term.
/// </remarks>
public sealed record VectorQuantizerOptions
{
    /// <summary>
    /// Default bound of one distance-matrix chunk: 16 MB. The whole <c>[M, K]</c> matrix of a DEFEAT batch
    /// (M = 1568 or 4900, K = 512) fits in one chunk; for large codebooks a chunk stays under glibc's
    /// largest mmap threshold (32 MB), so chunks reuse heap memory instead of fresh page-faulted
    /// mappings, and near the size of a last-level cache.
    /// </summary>
    public const long DefaultMaxDistanceBytes = 16L * 1024 * 1024;

    /// <summary>Number of codewords <c>K</c>.</summary>
    public int CodebookSize { get; init; } = 512;

    /// <summary>Width <c>D</c> of each codeword; the input's last dimension must equal it.</summary>
    public int Dim { get; init; } = 256;

    /// <summary>Commitment weight <c>beta</c> in <c>beta * mean((z - sg[e])^2)</c>; 0.25 as in VQ-VAE.</summary>
    public double CommitmentWeight { get; init; } = 0.25;

    /// <summary>Distance used to find the nearest codeword.</summary>
    public QuantizerDistance Distance { get; init; } = QuantizerDistance.Euclidean;

    /// <summary>How the codebook learns: by gradient (DEFEAT) or by exponential moving average.</summary>
    public CodebookUpdate CodebookUpdate { get; init; } = CodebookUpdate.Gradient;

    /// <summary>Decay of the moving averages (EMA codebook update, and code usage for dead-code restart), in [0, 1).</summary>
    public double Decay { get; init; } = 0.99;

    /// <summary>Laplace-smoothing constant added to each EMA cluster size so that no code divides by zero.</summary>
    public double Epsilon { get; init; } = 1e-5;

    /// <summary>Initialise the codebook by k-means (k-means++ seeding) on the first training batch.</summary>
    public bool KMeansInit { get; init; }

    /// <summary>Lloyd iterations of the k-means initialisation.</summary>
    public int KMeansIterations { get; init; } = 10;

    /// <summary>
    /// In training, a code whose moving-average usage (inputs per batch) falls below this value is
    /// restarted at a random input of the current batch; 0 turns the restart off.
    /// </summary>
    public double DeadCodeThreshold { get; init; }

    /// <summary>
    /// Put the uniform codebook at the data's scale on the first training batch: rescale it to the inputs' mean norm,
    /// or replace it by sampled inputs (see <see cref="Quantization.FirstBatchInit"/>). None (the official behaviour) by
    /// default; cannot be combined with <see cref="KMeansInit"/>.
    /// </summary>
    public FirstBatchInit FirstBatchInit { get; init; } = FirstBatchInit.None;

    /// <summary>
    /// How gradients pass the nearest-code choice to the input: straight-through (the official behaviour) or the
    /// rotation trick (see <see cref="Quantization.GradientEstimator"/>). The forward value is the codeword either way.
    /// </summary>
    public GradientEstimator GradientEstimator { get; init; } = GradientEstimator.StraightThrough;

    /// <summary>Half-width <c>a</c> of the uniform initialisation <c>U(-a, a)</c>; null means <c>1/K</c> as the official code.</summary>
    public double? InitScale { get; init; }

    /// <summary>Input rows per chunk of the distance kernel; null derives it from <see cref="MaxDistanceBytes"/>.</summary>
    public int? ChunkSize { get; init; }

    /// <summary>Upper bound, in bytes, of one chunk of the <c>[rows, K]</c> distance matrix when <see cref="ChunkSize"/> is null.</summary>
    public long MaxDistanceBytes { get; init; } = DefaultMaxDistanceBytes;

    /// <summary>Seed of every random choice (initialisation, k-means, dead-code restarts).</summary>
    public ulong Seed { get; init; }

    /// <summary>Throws if any option is out of range; called by the <see cref="VectorQuantizer"/> constructor.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of its range, or an enum option has an undefined
    /// value; the message names it.</exception>
    public void Validate()
    {
        OptionChecks.AtLeast(CodebookSize, 1, nameof(CodebookSize));
        OptionChecks.AtLeast(Dim, 1, nameof(Dim));
        OptionChecks.NonNegative(CommitmentWeight, nameof(CommitmentWeight));
        OptionChecks.Defined(Distance, nameof(Distance));
        OptionChecks.Defined(CodebookUpdate, nameof(CodebookUpdate));
        OptionChecks.InRange(Decay, 0, 1, nameof(Decay), maximumIncluded: false);
        OptionChecks.Positive(Epsilon, nameof(Epsilon));
        OptionChecks.Defined(FirstBatchInit, nameof(FirstBatchInit));
        if (FirstBatchInit != FirstBatchInit.None && KMeansInit)
            throw new ArgumentException(
                $"{nameof(FirstBatchInit)} must be None when {nameof(KMeansInit)} is true (both initialise the codebook on the first batch; choose one), got {FirstBatchInit}.", nameof(FirstBatchInit));
        if (FirstBatchInit == FirstBatchInit.MatchInputNorm && Distance == QuantizerDistance.Cosine)
            throw new ArgumentException(
                $"{nameof(FirstBatchInit)} must be None or SampleInputs with {nameof(Distance)} = Cosine (codewords are used as unit vectors, so MatchInputNorm has no effect), got MatchInputNorm.", nameof(FirstBatchInit));
        OptionChecks.Defined(GradientEstimator, nameof(GradientEstimator));
        OptionChecks.AtLeast(KMeansIterations, 1, nameof(KMeansIterations));
        OptionChecks.NonNegative(DeadCodeThreshold, nameof(DeadCodeThreshold)); // 0 = off
        if (InitScale is { } scale) OptionChecks.Positive(scale, nameof(InitScale)); // null = 1/K
        if (ChunkSize is { } chunk) OptionChecks.AtLeast(chunk, 1, nameof(ChunkSize)); // null = from MaxDistanceBytes
        OptionChecks.AtLeast(MaxDistanceBytes, 1, nameof(MaxDistanceBytes));
    }
}
