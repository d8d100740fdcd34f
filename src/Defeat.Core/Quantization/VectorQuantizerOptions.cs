namespace Defeat.Quantization;

/// <summary>
/// Settings of a <see cref="VectorQuantizer"/>. The defaults are the official DEFEAT quantizer:
/// 512 codes of width 256, Euclidean distance, codebook trained by gradient, initialised
/// <c>U(-1/K, 1/K)</c>.
/// </summary>
/// <remarks>
/// DEFEAT's official VQ-VAE loss is <c>0.5 * reconstruction + 0.1 * codebook + 0.025 * commitment</c>
/// (see docs/method.md). Those weights belong to the caller (the PerturbShield): this quantizer
/// returns the unweighted codebook loss and the commitment loss scaled only by
/// <see cref="CommitmentWeight"/>. To reproduce DEFEAT exactly, either keep 0.25 here and weigh
/// both terms by 0.1 outside, or set <see cref="CommitmentWeight"/> to 1 and weigh outside.
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
    public long Seed { get; init; } = 0;

    /// <summary>Throws if any option is out of range; called by the <see cref="VectorQuantizer"/> constructor.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of its range; the message names it.</exception>
    /// <exception cref="ArgumentException">An enum option has an undefined value.</exception>
    public void Validate()
    {
        if (CodebookSize < 1)
            throw new ArgumentOutOfRangeException(nameof(CodebookSize), CodebookSize, $"{nameof(CodebookSize)} must be at least 1; got {CodebookSize}.");
        if (Dim < 1)
            throw new ArgumentOutOfRangeException(nameof(Dim), Dim, $"{nameof(Dim)} must be at least 1; got {Dim}.");
        if (!(CommitmentWeight >= 0) || double.IsInfinity(CommitmentWeight))
            throw new ArgumentOutOfRangeException(nameof(CommitmentWeight), CommitmentWeight, $"{nameof(CommitmentWeight)} must be finite and >= 0; got {CommitmentWeight}.");
        if (!Enum.IsDefined(Distance))
            throw new ArgumentException($"{nameof(Distance)} must be Euclidean or Cosine; got {(int)Distance}.", nameof(Distance));
        if (!Enum.IsDefined(CodebookUpdate))
            throw new ArgumentException($"{nameof(CodebookUpdate)} must be Gradient or ExponentialMovingAverage; got {(int)CodebookUpdate}.", nameof(CodebookUpdate));
        if (!(Decay >= 0 && Decay < 1))
            throw new ArgumentOutOfRangeException(nameof(Decay), Decay, $"{nameof(Decay)} must be in [0, 1); got {Decay}.");
        if (!(Epsilon > 0) || double.IsInfinity(Epsilon))
            throw new ArgumentOutOfRangeException(nameof(Epsilon), Epsilon, $"{nameof(Epsilon)} must be finite and > 0; got {Epsilon}.");
        if (!Enum.IsDefined(FirstBatchInit))
            throw new ArgumentException($"{nameof(FirstBatchInit)} must be None, MatchInputNorm or SampleInputs; got {(int)FirstBatchInit}.", nameof(FirstBatchInit));
        if (FirstBatchInit != FirstBatchInit.None && KMeansInit)
            throw new ArgumentException(
                $"{nameof(FirstBatchInit)} = {FirstBatchInit} and {nameof(KMeansInit)} = true both initialise the codebook on the first batch; choose one.", nameof(FirstBatchInit));
        if (FirstBatchInit == FirstBatchInit.MatchInputNorm && Distance == QuantizerDistance.Cosine)
            throw new ArgumentException(
                $"{nameof(FirstBatchInit)} = MatchInputNorm has no effect with {nameof(Distance)} = Cosine (codewords are used as unit vectors); use None or SampleInputs.", nameof(FirstBatchInit));
        if (!Enum.IsDefined(GradientEstimator))
            throw new ArgumentException($"{nameof(GradientEstimator)} must be StraightThrough or RotationTrick; got {(int)GradientEstimator}.", nameof(GradientEstimator));
        if (KMeansIterations < 1)
            throw new ArgumentOutOfRangeException(nameof(KMeansIterations), KMeansIterations, $"{nameof(KMeansIterations)} must be at least 1; got {KMeansIterations}.");
        if (!(DeadCodeThreshold >= 0) || double.IsInfinity(DeadCodeThreshold))
            throw new ArgumentOutOfRangeException(nameof(DeadCodeThreshold), DeadCodeThreshold, $"{nameof(DeadCodeThreshold)} must be finite and >= 0 (0 = off); got {DeadCodeThreshold}.");
        if (InitScale is { } scale && (!(scale > 0) || double.IsInfinity(scale)))
            throw new ArgumentOutOfRangeException(nameof(InitScale), scale, $"{nameof(InitScale)} must be finite and > 0, or null for 1/K; got {scale}.");
        if (ChunkSize is { } chunk && chunk < 1)
            throw new ArgumentOutOfRangeException(nameof(ChunkSize), chunk, $"{nameof(ChunkSize)} must be at least 1, or null to derive it from {nameof(MaxDistanceBytes)}; got {chunk}.");
        if (MaxDistanceBytes < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxDistanceBytes), MaxDistanceBytes, $"{nameof(MaxDistanceBytes)} must be at least 1; got {MaxDistanceBytes}.");
    }
}
