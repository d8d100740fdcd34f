using Defeat.Quantization;
using Defeat.Validation;

namespace Defeat.Shield;

/// <summary>Options of <see cref="PerturbShield"/>; the defaults are the official DEFEAT shield for ViT-B/32 at 224 px.</summary>
public sealed record PerturbShieldOptions
{
    /// <summary>Width <c>D</c> of the grid features (512 for ViT-B/32's projected patch tokens).</summary>
    public int FeatureDim { get; init; } = 512;

    /// <summary>Rows <c>h</c> of the patch grid (7 for ViT-B/32 at 224 px).</summary>
    public int GridHeight { get; init; } = 7;

    /// <summary>Columns <c>w</c> of the patch grid; <c>N = h * w</c> positions.</summary>
    public int GridWidth { get; init; } = 7;

    /// <summary>Width <c>H</c> of the VQ-VAE's hidden layers and codewords (256 in DEFEAT).</summary>
    public int HiddenDim { get; init; } = 256;

    /// <summary>Number of codewords <c>K</c> (512 in DEFEAT); used when the shield builds its own quantizer.</summary>
    public int CodebookSize { get; init; } = 512;

    /// <summary>Weight of the reconstruction MSE in the VQ-VAE loss (0.5 in DEFEAT).</summary>
    public double ReconstructionWeight { get; init; } = 0.5;

    /// <summary>Weight of the quantizer's terms, <c>CodebookLoss + CommitmentLoss</c>, in the VQ-VAE loss (0.1 in DEFEAT). The
    /// commitment term carries the quantizer's own weight (<see cref="VectorQuantizerOptions.CommitmentWeight"/>, 0.25), so
    /// the commitment's overall weight is 0.1 * 0.25 = 0.025 as in DEFEAT.</summary>
    public double CodebookWeight { get; init; } = 0.1;

    /// <summary>
    /// Options of the quantizer the shield builds (EMA, k-means init, dead-code restart, cosine, ...). Null:
    /// the official one, <c>new VectorQuantizerOptions { CodebookSize = CodebookSize, Dim = HiddenDim }</c>.
    /// Its <c>CodebookSize</c> and <c>Dim</c> must equal <see cref="CodebookSize"/> and <see cref="HiddenDim"/>;
    /// its <c>CommitmentWeight</c> is the commitment term's weight relative to the codebook term in the shield's loss.
    /// </summary>
    public VectorQuantizerOptions? Quantizer { get; init; }

    /// <summary>
    /// Normalisation of each latent vector before the quantizer: none (official), L2 or LayerNorm. Pair L2 with
    /// <c>Quantizer.Distance = Cosine</c> for a cosine codebook on unit latents.
    /// </summary>
    public LatentNormalization LatentNormalization { get; init; } = LatentNormalization.None;

    /// <summary>
    /// Width d of a low-dimensional codebook: latents are projected from <see cref="HiddenDim"/> to d by a learned linear
    /// layer before the lookup and back after it (factorised codes). Null (official): codewords of width <see cref="HiddenDim"/>.
    /// </summary>
    public int? CodeDim { get; init; }

    /// <summary>Width of the quantizer the shield needs: <see cref="CodeDim"/> when set, otherwise <see cref="HiddenDim"/>.</summary>
    public int QuantizerDim => CodeDim ?? HiddenDim;

    /// <summary>
    /// These options with <see cref="Quantizer"/> set to <paramref name="configure"/> applied to the current quantizer options
    /// (the official ones when null), sized first to <see cref="CodebookSize"/> and <see cref="QuantizerDim"/>: e.g.
    /// <c>options.WithQuantizer(q =&gt; q with { KMeansInit = true })</c>. Set the sizes (and <see cref="CodeDim"/>) before calling it.
    /// </summary>
    /// <param name="configure">Changes the quantizer options.</param>
    public PerturbShieldOptions WithQuantizer(Func<VectorQuantizerOptions, VectorQuantizerOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var sized = (Quantizer ?? new VectorQuantizerOptions()) with { CodebookSize = CodebookSize, Dim = QuantizerDim };
        return this with { Quantizer = configure(sized) };
    }

    /// <summary>Number of grid positions <c>N = GridHeight * GridWidth</c>.</summary>
    public int GridPositions => GridHeight * GridWidth;

    /// <summary>The options of a shield for a square grid of <paramref name="gridPositions"/> positions (49 gives 7 x 7).</summary>
    /// <param name="featureDim">Width D of the grid features.</param>
    /// <param name="gridPositions">N, a perfect square.</param>
    public static PerturbShieldOptions ForSquareGrid(int featureDim, int gridPositions)
    {
        var side = (int)Math.Round(Math.Sqrt(Math.Max(gridPositions, 0)));
        if (gridPositions < 1 || side * side != gridPositions)
            throw new ArgumentOutOfRangeException(nameof(gridPositions), gridPositions, $"{nameof(gridPositions)} must be a positive perfect square (h x h grid), got {gridPositions}.");
        return new PerturbShieldOptions { FeatureDim = featureDim, GridHeight = side, GridWidth = side };
    }

    /// <summary>Checks every option; throws <see cref="ArgumentOutOfRangeException"/> naming the first bad one.</summary>
    public void Validate()
    {
        OptionChecks.AtLeast(FeatureDim, 1, nameof(FeatureDim));
        OptionChecks.AtLeast(GridHeight, 1, nameof(GridHeight));
        OptionChecks.AtLeast(GridWidth, 1, nameof(GridWidth));
        OptionChecks.AtLeast(HiddenDim, 1, nameof(HiddenDim));
        OptionChecks.AtLeast(CodebookSize, 1, nameof(CodebookSize));
        OptionChecks.NonNegative(ReconstructionWeight, nameof(ReconstructionWeight));
        OptionChecks.NonNegative(CodebookWeight, nameof(CodebookWeight));
        OptionChecks.Defined(LatentNormalization, nameof(LatentNormalization));
        if (CodeDim is { } codeDim) OptionChecks.AtLeast(codeDim, 1, nameof(CodeDim)); // null = look codes up in H
        if (Quantizer is { } q && (q.CodebookSize != CodebookSize || q.Dim != QuantizerDim))
            throw new ArgumentOutOfRangeException(nameof(Quantizer), q,
                $"{nameof(Quantizer)} must have CodebookSize = {CodebookSize} and Dim = {QuantizerDim} ({nameof(CodebookSize)}, {(CodeDim is null ? nameof(HiddenDim) : nameof(CodeDim))}), got CodebookSize = {q.CodebookSize}, Dim = {q.Dim}.");
    }
}
