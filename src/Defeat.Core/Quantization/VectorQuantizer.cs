using Defeat.Validation;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Defeat.Quantization;

/// <summary>
/// Vector quantizer of DEFEAT's PerturbShield (VQ-VAE bottleneck): snaps each input vector
/// <c>z</c> to its nearest codeword <c>e_k = argmin_k |z - e_k|^2</c> of a <c>[K, D]</c> codebook, and
/// passes gradients through the choice with the straight-through estimator.
/// </summary>
/// <remarks>
/// <para><b>Input.</b> <c>[..., D]</c>, channel-last, any leading dimensions, float32 or float64 of the
/// codebook's dtype and device. A convolutional feature map <c>[B, D, H, W]</c> is quantized as
/// <c>quantizer.Quantize(x.permute(0, 2, 3, 1))</c>; permute <c>Quantized</c> back with
/// <c>permute(0, 3, 1, 2)</c>; <c>Indices</c> is then <c>[B, H, W]</c>.</para>
/// <para><b>Outputs</b> (<see cref="QuantizerOutput"/>): <c>Quantized</c> equals the chosen codeword
/// exactly in the forward pass, and its gradient reaches the input unchanged (the official
/// <c>ze + (zq - ze).detach()</c>) and never the codebook; <c>CodebookLoss = mean((sg[z] - e)^2)</c> is
/// unweighted and is the only path by which a gradient-trained codebook learns;
/// <c>CommitmentLoss = CommitmentWeight * mean((z - sg[e])^2)</c>.</para>
/// <para><b>State dict.</b> The codebook is stored under the key <c>weight</c>, as in
/// <c>nn.Embedding</c>: a parent module holding this quantizer in a field named <c>vq_embedding</c>
/// (the official <c>VQVAE_NET</c> field) reads the official checkpoint key
/// <c>vq_embedding.weight</c> without renaming. In <see cref="CodebookUpdate.Gradient"/> mode it is the
/// only entry (a trainable parameter). In <see cref="CodebookUpdate.ExponentialMovingAverage"/> mode
/// <c>weight</c> is a buffer next to the buffers <c>cluster_size</c> <c>[K]</c> and <c>embed_avg</c>
/// <c>[K, D]</c>; <c>cluster_size</c> is also kept when dead-code restart is on, and
/// <c>initialized</c> (scalar) when k-means initialisation or a <see cref="FirstBatchInit"/> is on.</para>
/// <para><b>Modes.</b> Training mode may change the codebook inside <c>forward</c> (k-means or first-batch
/// initialisation, EMA update, dead-code restart); evaluation mode never does.</para>
/// <para><b>Gradient estimator.</b> <see cref="VectorQuantizerOptions.GradientEstimator"/> replaces the
/// straight-through copy by the rotation trick (<see cref="RotationTrick"/>); the forward value is the codeword
/// either way, and the codebook still learns only from <c>CodebookLoss</c>.</para>
/// </remarks>
public sealed class VectorQuantizer : Module<Tensor, QuantizerOutput>, IVectorQuantizer
{
    private const string WeightKey = "weight";
    private const string ClusterSizeKey = "cluster_size";
    private const string EmbedAvgKey = "embed_avg";
    private const string InitializedKey = "initialized";

    private readonly torch.Generator _generator;

    /// <summary>Creates a quantizer with the given options (defaults: the official DEFEAT quantizer).</summary>
    /// <param name="options">Settings; null means <c>new VectorQuantizerOptions()</c>.</param>
    /// <param name="name">Module name.</param>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range (see <see cref="VectorQuantizerOptions.Validate"/>).</exception>
    public VectorQuantizer(VectorQuantizerOptions? options = null, string name = nameof(VectorQuantizer)) : base(name)
    {
        Options = options ?? new VectorQuantizerOptions();
        Options.Validate();
        _generator = new torch.Generator(Options.Seed);

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        double a = Options.InitScale ?? 1.0 / Options.CodebookSize;
        // U(-a, a), as the official nn.Embedding(K, D).weight.uniform_(-1/K, 1/K).
        Tensor initial = torch.rand(new long[] { Options.CodebookSize, Options.Dim }, generator: _generator)
            .Times_(2 * a).Minus_(a);
        if (Options.Distance == QuantizerDistance.Cosine)
            initial = functional.normalize(initial, p: 2, dim: 1);

        if (Options.CodebookUpdate == CodebookUpdate.Gradient)
            register_parameter(WeightKey, new Parameter(initial.clone().DetachFromDisposeScope(), requires_grad: true));
        else
        {
            register_buffer(WeightKey, initial.clone().DetachFromDisposeScope());
            // Each code starts as if it had seen itself once: unused codes then stay where they are.
            register_buffer(EmbedAvgKey, initial.clone().DetachFromDisposeScope());
        }
        if (Options.CodebookUpdate == CodebookUpdate.ExponentialMovingAverage || Options.DeadCodeThreshold > 0)
            register_buffer(ClusterSizeKey, torch.ones(Options.CodebookSize).DetachFromDisposeScope());
        if (Options.KMeansInit || Options.FirstBatchInit != FirstBatchInit.None)
            register_buffer(InitializedKey, torch.zeros(Array.Empty<long>()).DetachFromDisposeScope());
        RegisterComponents();
    }

    /// <summary>The validated options this quantizer was built with.</summary>
    public VectorQuantizerOptions Options { get; }

    /// <inheritdoc />
    public int CodebookSize => Options.CodebookSize;

    /// <inheritdoc />
    public int Dim => Options.Dim;

    /// <summary>
    /// The <c>[K, D]</c> codebook (state-dict key <c>weight</c>): a trainable parameter in
    /// <see cref="CodebookUpdate.Gradient"/> mode, a buffer in EMA mode. In cosine mode the codewords
    /// are used L2-normalised (see <see cref="Lookup"/>).
    /// </summary>
    public Tensor Codebook => Options.CodebookUpdate == CodebookUpdate.Gradient
        ? get_parameter(WeightKey)!
        : get_buffer(WeightKey)!;

    /// <summary>Rows per chunk of the distance kernel for inputs of the given dtype.</summary>
    /// <param name="dtype">float32 or float64.</param>
    public long ChunkRows(ScalarType dtype) => Options.ChunkSize
        ?? NearestCodeSearch.ChunkRows(Options.CodebookSize, dtype == ScalarType.Float64 ? 8 : 4, Options.MaxDistanceBytes);

    /// <inheritdoc />
    public QuantizerOutput Quantize(Tensor input) => call(input);

    /// <summary>
    /// Quantizes <paramref name="input"/> <c>[..., D]</c>; see the class remarks for the outputs.
    /// </summary>
    /// <exception cref="ArgumentException">Wrong last dimension, dtype or device.</exception>
    public override QuantizerOutput forward(Tensor input)
    {
        ValidateInput(input);
        using var scope = torch.NewDisposeScope();
        long[] leading = input.shape[..^1];
        Tensor z = input.reshape(-1, Options.Dim); // a view when the input is contiguous
        long m = z.shape[0];
        bool cosine = Options.Distance == QuantizerDistance.Cosine;
        bool gradEnabled = torch.is_grad_enabled();

        if (training && (Options.KMeansInit || Options.FirstBatchInit != FirstBatchInit.None) && m > 0)
            InitialiseOnFirstBatchOnce(z);

        Tensor zDetached = z.detach();
        Tensor indices = NearestCodeSearch.Find(zDetached, Codebook, Options.Distance, ChunkRows(input.dtype));

        // z and e as the losses and the output see them (unit vectors in cosine mode).
        Tensor codes = cosine ? functional.normalize(Codebook, p: 2, dim: 1) : Codebook;
        Tensor zLoss = cosine ? functional.normalize(z, p: 2, dim: 1) : z;
        // Without autograd the two losses share one value: compute it once, on the CPU in the gather's own pass.
        bool shared = m > 0 && (!gradEnabled || (!zLoss.requires_grad && !codes.requires_grad));
        Tensor e, codebookLoss, commitmentLoss;
        if (shared && CodewordGather.Supports(codes, zLoss))
            (e, codebookLoss) = CodewordGather.PickWithError(codes, indices, zLoss);
        else
        {
            e = codes.index_select(0, indices);
            codebookLoss = m == 0 ? torch.zeros(Array.Empty<long>(), dtype: input.dtype, device: input.device)
                : shared ? functional.mse_loss(zLoss, e)
                : functional.mse_loss(e, zLoss.detach());
        }
        commitmentLoss = m == 0 ? torch.zeros(Array.Empty<long>(), dtype: input.dtype, device: input.device)
            : shared ? codebookLoss.Times(Options.CommitmentWeight)
            : functional.mse_loss(zLoss, e.detach()).Times(Options.CommitmentWeight);

        // Straight-through: forward value e exactly (e + 0); backward the gradient reaches z unchanged.
        // The rotation trick keeps the forward value and sends the gradient back through lambda R^T.
        Tensor eDetached = e.detach();
        Tensor quantized = !(gradEnabled && z.requires_grad) ? eDetached
            : Options.GradientEstimator == GradientEstimator.RotationTrick ? RotationTrick.Apply(z, eDetached)
            : eDetached.Plus(z - zDetached);

        Tensor usage = torch.bincount(indices, minlength: Options.CodebookSize);
        Tensor perplexity = CodebookUsage.Perplexity(usage, input.dtype);

        if (training && m > 0)
            UpdateCodebook(zLoss.detach(), indices, usage);

        return new QuantizerOutput(
            quantized.reshape(input.shape),
            indices.reshape(leading),
            codebookLoss,
            commitmentLoss,
            usage,
            perplexity).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Returns the codewords of int64 <paramref name="indices"/> of any shape: <c>[..., D]</c> (unit
    /// codewords in cosine mode, as <see cref="QuantizerOutput.Quantized"/>).
    /// </summary>
    /// <exception cref="ArgumentException">Not int64, or a value outside <c>[0, K)</c>.</exception>
    public Tensor Lookup(Tensor indices)
    {
        ArgumentNullException.ThrowIfNull(indices);
        TensorChecks.Require(indices, indices.dtype == ScalarType.Int64, nameof(indices), "int64 indices of any shape");
        using var scope = torch.NewDisposeScope();
        if (indices.numel() > 0)
        {
            long min = indices.min().item<long>(), max = indices.max().item<long>();
            if (min < 0 || max >= Options.CodebookSize)
                throw new ArgumentException(
                    $"indices must be in [0, {Options.CodebookSize}) (CodebookSize), got values from {min} to {max}.", nameof(indices));
        }
        Tensor codes = Options.Distance == QuantizerDistance.Cosine ? functional.normalize(Codebook, p: 2, dim: 1) : Codebook;
        long[] shape = [.. indices.shape, Options.Dim];
        return codes.index_select(0, indices.reshape(-1).to(codes.device)).reshape(shape).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Distances <c>[..., K]</c> from inputs <c>[..., D]</c> to every codeword: squared Euclidean, or in cosine mode the
    /// squared Euclidean distance between unit vectors, <c>2 - 2 cos</c>. Differentiable in the input only; never
    /// changes the codebook.
    /// </summary>
    /// <exception cref="ArgumentException">Wrong last dimension, dtype or device.</exception>
    public Tensor Distances(Tensor input)
    {
        ValidateInput(input);
        using var scope = torch.NewDisposeScope();
        Tensor codes = Codebook.detach();
        if (Options.Distance == QuantizerDistance.Cosine)
        {
            codes = functional.normalize(codes, p: 2, dim: 1);
            input = functional.normalize(input, p: 2, dim: -1);
        }
        return IVectorQuantizer.SquaredDistances(input, codes).MoveToOuterDisposeScope();
    }

    /// <summary>Releases the random generator along with the module's tensors.</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
            _generator.Dispose();
        base.Dispose(disposing);
    }

    private void ValidateInput(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        TensorChecks.Require(input, input.dtype == ScalarType.Float32 || input.dtype == ScalarType.Float64, nameof(input), "float32 or float64 [..., D]");
        TensorChecks.Require(input, input.dim() > 0 && input.shape[^1] == Options.Dim, nameof(input), $"[..., {Options.Dim}] (last dimension = Dim)");
        Tensor codebook = Codebook;
        TensorChecks.Require(input, input.dtype == codebook.dtype, nameof(input), $"{codebook.dtype} like the codebook (or convert the quantizer with .to({input.dtype}))");
        TensorChecks.RequireDevice(input, codebook.device, nameof(input), "the codebook");
    }

    private void InitialiseOnFirstBatchOnce(Tensor z)
    {
        Tensor flag = get_buffer(InitializedKey)!;
        if (flag.ToDouble() != 0)
            return;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        Tensor data = z.detach();
        if (Options.Distance == QuantizerDistance.Cosine)
            data = functional.normalize(data, p: 2, dim: 1);
        Tensor centres = Options.KMeansInit
            ? KMeans.Fit(data, Options.CodebookSize, Options.KMeansIterations, Options.Distance, ChunkRows(data.dtype), _generator)
            : Options.FirstBatchInit == FirstBatchInit.MatchInputNorm
                ? Codebook * (data.norm(1).mean() / Codebook.norm(1).mean().ClampMin(1e-30))
                : SampleRows(data, Options.CodebookSize);
        Codebook.copy_(centres);
        if (Options.CodebookUpdate == CodebookUpdate.ExponentialMovingAverage)
        {
            get_buffer(EmbedAvgKey)!.copy_(centres);
            get_buffer(ClusterSizeKey)!.Fill_(1);
        }
        flag.Fill_(1);
    }

    // K rows of the data: distinct rows when there are enough of them, otherwise drawn with replacement.
    private Tensor SampleRows(Tensor data, long count)
    {
        long m = data.shape[0];
        Tensor pick = count <= m
            ? torch.randperm(m, generator: _generator).narrow(0, 0, count)
            : torch.randint(0, m, new long[] { count }, generator: _generator);
        return data.index_select(0, pick.to(data.device));
    }

    private void UpdateCodebook(Tensor zDetached, Tensor indices, Tensor usage)
    {
        Tensor? clusterSize = get_buffer(ClusterSizeKey);
        if (clusterSize is null)
            return;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        double decay = Options.Decay;
        Tensor counts = usage.to_type(clusterSize.dtype);
        clusterSize.Times_(decay).Plus_(counts, 1 - decay);

        if (Options.CodebookUpdate == CodebookUpdate.ExponentialMovingAverage)
        {
            Tensor embedAvg = get_buffer(EmbedAvgKey)!;
            Tensor embedSum = torch.zeros_like(embedAvg).IndexAdd_(0, indices, zDetached);
            embedAvg.Times_(decay).Plus_(embedSum, 1 - decay);
            // Laplace smoothing: (N_k + eps) / (n + K eps) * n keeps every divisor positive.
            Tensor n = clusterSize.sum();
            Tensor smoothed = clusterSize.Plus(Options.Epsilon) / n.Plus(Options.CodebookSize * Options.Epsilon) * n;
            Codebook.copy_(embedAvg / smoothed.unsqueeze(1).to_type(embedAvg.dtype));
        }

        if (Options.DeadCodeThreshold > 0)
            RestartDeadCodes(zDetached, clusterSize);
    }

    private void RestartDeadCodes(Tensor zDetached, Tensor clusterSize)
    {
        Tensor dead = clusterSize.Lt(Options.DeadCodeThreshold).nonzero().reshape(-1);
        long deadCount = dead.shape[0];
        if (deadCount == 0)
            return;
        Tensor samples = SampleRows(zDetached, deadCount);
        Codebook.index_copy_(0, dead, samples);
        clusterSize.IndexFill_(0, dead, Options.DeadCodeThreshold);
        if (Options.CodebookUpdate == CodebookUpdate.ExponentialMovingAverage)
            get_buffer(EmbedAvgKey)!.index_copy_(0, dead, samples.Times(Options.DeadCodeThreshold));
    }
}
