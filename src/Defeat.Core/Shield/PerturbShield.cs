using Defeat.Quantization;
using Defeat.Validation;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Defeat.Shield;

/// <summary>
/// PerturbShield (DEFEAT's robust branch): grid discrete reconstruction <c>Î_patch = VQVAE(I_patch)</c>
/// followed by the semantic alignment projection <c>Î_proj = W · Î_patch</c>.
/// </summary>
/// <remarks>
/// <para>The input grid <c>[B, N, D]</c> (row-major) is arranged as the map <c>[B, D, h, w]</c>, encoded to
/// <c>z_e</c>, snapped to codewords <c>z_q</c> (straight-through), decoded to <c>x̂</c>, flattened back to
/// <c>[B, N, D]</c> and projected over the N positions to <c>[B, D]</c>.</para>
/// <para>VQ-VAE loss = <c>ReconstructionWeight * mean((x - x̂)^2) + CodebookWeight * (CodebookLoss + CommitmentLoss)</c>
/// with the quantizer's own terms: its unweighted <c>CodebookLoss = mean((sg[z_e] - z_q)^2)</c> and its
/// <c>CommitmentLoss = beta * mean((z_e - sg[z_q])^2)</c>, where beta is the quantizer's commitment weight
/// (<see cref="VectorQuantizerOptions.CommitmentWeight"/>, 0.25). The commitment weight therefore lives in one
/// place, the quantizer, and the defaults 0.5, 0.1 and 0.25 give the official
/// <c>0.5 * rec + 0.1 * codebook + 0.025 * commitment</c> (the paper's gamma = 0.25 beta).</para>
/// <para>Options beyond the official shield (all off by default): a low-dimensional codebook
/// (<see cref="PerturbShieldOptions.CodeDim"/>) and a normalisation of the quantizer's input
/// (<see cref="PerturbShieldOptions.LatentNormalization"/>), see <see cref="GridVqVae"/>; the quantizer then measures its
/// commitment term on those latents. The code-consistency loss (<see cref="CodeConsistencyLoss"/>) and the soft-VQ
/// surrogate for adaptive attacks (<see cref="UseSoftQuantization"/>) are also here.</para>
/// <para>Submodules <c>vqvae</c> (<see cref="GridVqVae"/>) and <c>cls_projection</c>
/// (<see cref="SemanticAlignmentProjection"/>) carry the official <c>CustomCLIP</c> field names, so the shield's
/// state dict keys equal the official checkpoint's <c>vqvae.*</c> and <c>cls_projection.*</c> entries. Layers are
/// initialised as PyTorch's defaults (seed with <c>torch.manual_seed</c> before construction).</para>
/// </remarks>
public sealed class PerturbShield : Module<Tensor, ShieldOutput>, IPerturbShield
{
    private readonly GridVqVae vqvae;
    private readonly SemanticAlignmentProjection cls_projection;

    /// <summary>Creates a shield with its own <see cref="VectorQuantizer"/> built from <see cref="PerturbShieldOptions.Quantizer"/>.</summary>
    /// <param name="options">Options; the official DEFEAT shield when null.</param>
    public PerturbShield(PerturbShieldOptions? options = null)
        : this(options ?? new PerturbShieldOptions(), null)
    {
    }

    /// <summary>Creates a shield around an injected quantizer (any <see cref="IVectorQuantizer"/> of width <see cref="PerturbShieldOptions.QuantizerDim"/>).</summary>
    /// <param name="options">Options; <see cref="PerturbShieldOptions.Quantizer"/> and <see cref="PerturbShieldOptions.CodebookSize"/> are not used.</param>
    /// <param name="quantizer">The bottleneck; registered as a submodule when it is a TorchSharp module.</param>
    public PerturbShield(PerturbShieldOptions options, IVectorQuantizer? quantizer) : base(nameof(PerturbShield))
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        quantizer ??= new VectorQuantizer(options.Quantizer ?? new VectorQuantizerOptions { CodebookSize = options.CodebookSize, Dim = options.QuantizerDim });
        vqvae = new GridVqVae(options.FeatureDim, options.HiddenDim, quantizer, options.LatentNormalization, options.CodeDim);
        cls_projection = new SemanticAlignmentProjection(options.GridPositions);
        RegisterComponents();
    }

    /// <summary>The validated options.</summary>
    public PerturbShieldOptions Options { get; }

    /// <summary>The VQ-VAE (encoder, quantizer, decoder).</summary>
    public GridVqVae VqVae => vqvae;

    /// <summary>The semantic alignment projection W.</summary>
    public SemanticAlignmentProjection Projection => cls_projection;

    /// <inheritdoc />
    public int FeatureDim => Options.FeatureDim;

    /// <inheritdoc />
    public int GridPositions => Options.GridPositions;

    /// <inheritdoc />
    public int CodebookSize => vqvae.Quantizer.CodebookSize;

    /// <inheritdoc />
    public ShieldOutput Shield(Tensor gridFeatures) => call(gridFeatures);

    /// <summary>Runs the shield on grid features <c>[B, N, D]</c>.</summary>
    /// <param name="gridFeatures">Patch features in row-major grid order.</param>
    public override ShieldOutput forward(Tensor gridFeatures)
    {
        ArgumentNullException.ThrowIfNull(gridFeatures);
        TensorChecks.Require(gridFeatures, gridFeatures.dim() == 3 && gridFeatures.shape[1] == GridPositions && gridFeatures.shape[2] == FeatureDim,
            nameof(gridFeatures), $"[B, N={GridPositions}, D={FeatureDim}] ({Options.GridHeight} x {Options.GridWidth} grid)");
        // The first convolution would otherwise raise a native error on another dtype or device.
        var weight = parameters().First();
        TensorChecks.RequireDtype(gridFeatures, weight.dtype, nameof(gridFeatures), "the shield's weights");
        TensorChecks.RequireDevice(gridFeatures, weight.device, nameof(gridFeatures), "the shield");

        using var scope = NewDisposeScope();
        var batch = gridFeatures.shape[0];
        // [B, N, D] -> [B, D, h, w]: position n = row * w + column.
        var x = gridFeatures.transpose(1, 2).reshape(batch, FeatureDim, Options.GridHeight, Options.GridWidth);

        var ze = vqvae.Encode(x);
        var bottleneck = vqvae.Bottleneck(ze);
        var quantized = bottleneck.Quantizer;
        var xHat = vqvae.Decode(bottleneck.DecoderInput);

        var reconstruction = xHat.reshape(batch, FeatureDim, GridPositions).transpose(1, 2);
        var projected = cls_projection.call(reconstruction);

        var reconstructionLoss = functional.mse_loss(xHat, x);
        var codebookLoss = quantized.CodebookLoss;
        var commitmentLoss = quantized.CommitmentLoss;
        var loss = reconstructionLoss.Times(Options.ReconstructionWeight)
                   .Plus(codebookLoss.Plus(commitmentLoss).Times(Options.CodebookWeight));

        return new ShieldOutput(projected, reconstruction,
            quantized.Indices.reshape(batch, GridPositions),
            reconstructionLoss, codebookLoss, commitmentLoss, loss, quantized.Perplexity,
            bottleneck.Latents.reshape(batch, GridPositions, vqvae.CodeDim)).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public Tensor CodeConsistencyLoss(ShieldOutput adversarial, Tensor cleanGridFeatures)
    {
        ArgumentNullException.ThrowIfNull(adversarial);
        ArgumentNullException.ThrowIfNull(cleanGridFeatures);
        var latents = adversarial.Latents
            ?? throw new ArgumentException("adversarial has no Latents; expected an output of this shield's Shield().", nameof(adversarial));
        if (latents.dim() != 3 || latents.shape[1] != GridPositions || latents.shape[2] != vqvae.CodeDim)
            throw new ArgumentException($"adversarial.Latents must be [B, N={GridPositions}, d={vqvae.CodeDim}], got [{string.Join(", ", latents.shape)}].", nameof(adversarial));
        if (cleanGridFeatures.dim() != 3 || cleanGridFeatures.shape[0] != latents.shape[0] || cleanGridFeatures.shape[1] != GridPositions || cleanGridFeatures.shape[2] != FeatureDim)
            throw new ArgumentException($"cleanGridFeatures must be [B={latents.shape[0]}, N={GridPositions}, D={FeatureDim}] (one clean image per adversarial one), " +
                $"got [{string.Join(", ", cleanGridFeatures.shape)}].", nameof(cleanGridFeatures));

        using var scope = NewDisposeScope();
        var batch = latents.shape[0];
        Tensor cleanCodes;
        using (no_grad())
        {
            var x = cleanGridFeatures.transpose(1, 2).reshape(batch, FeatureDim, Options.GridHeight, Options.GridWidth);
            cleanCodes = vqvae.NearestCodes(vqvae.Latents(vqvae.Encode(x))).reshape(batch, GridPositions);
        }
        var toCleanCode = vqvae.Quantizer.Distances(latents).gather(2, cleanCodes.unsqueeze(2));
        return toCleanCode.mean().Over(vqvae.CodeDim).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public IDisposable UseSoftQuantization(double temperature) => vqvae.UseSoftQuantization(temperature);

    /// <inheritdoc />
    public Tensor AlignmentLoss(Tensor classFeature, Tensor projectedFeature)
    {
        ArgumentNullException.ThrowIfNull(classFeature);
        ArgumentNullException.ThrowIfNull(projectedFeature);
        TensorChecks.Require(classFeature, classFeature.dim() == 2 && classFeature.shape[1] == FeatureDim, nameof(classFeature), $"[B, D={FeatureDim}]");
        TensorChecks.Require(projectedFeature, projectedFeature.shape.SequenceEqual(classFeature.shape), nameof(projectedFeature),
            $"the shape of classFeature {TensorChecks.Shape(classFeature)}");
        return functional.l1_loss(functional.normalize(classFeature, dim: -1), functional.normalize(projectedFeature, dim: -1));
    }
}
