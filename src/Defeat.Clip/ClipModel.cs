using Defeat.Backbones;
using Defeat.Clip.Modeling;
using Defeat.Clip.Tokenization;
using Defeat.Prompting;
using Defeat.Validation;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Defeat.Clip;

/// <summary>
/// OpenAI CLIP with a Vision Transformer image encoder, as a TorchSharp module whose state-dict keys are
/// the reference ones (<c>visual.conv1.weight</c>, <c>transformer.resblocks.0.attn.in_proj_weight</c>, ...).
/// It is DEFEAT's backbone: images in [0, 1] give the class feature and the grid features; token ids or
/// prompt embeddings give text features.
/// </summary>
/// <remarks>
/// Build one from a checkpoint with <see cref="Loading.ClipLoader.Load"/>, or from a
/// <see cref="ClipConfig"/> (then call <see cref="InitializeParameters"/> to train from scratch).
/// The forward of the module, <c>call(images, tokenIds)</c>, returns CLIP's logits per image <c>[B, n]</c>.
/// </remarks>
public sealed class ClipModel : nn.Module<Tensor, Tensor, Tensor>, IDeepPromptBackbone
{
#pragma warning disable IDE1006 // PyTorch names: they are the state-dict keys.
    private readonly ImageNormalization normalize;
    private readonly VisionTransformer visual;
    private readonly ClipTransformer transformer;
    private readonly Embedding token_embedding;
    private readonly Parameter positional_embedding;
    private readonly LayerNorm ln_final;
    private readonly Parameter text_projection;
    private readonly Parameter logit_scale;
#pragma warning restore IDE1006

    /// <summary>The sizes this model was built with.</summary>
    public ClipConfig Config { get; }

    /// <summary>The tokenizer behind <see cref="Tokenize"/> and <see cref="Encode"/>.</summary>
    public ClipTokenizer Tokenizer { get; }

    /// <summary>Creates a model with the given sizes; weights are zero until loaded or initialised.</summary>
    /// <param name="config">Model sizes; validated here.</param>
    /// <param name="tokenizer">Tokenizer; CLIP's (<see cref="ClipTokenizer.Default"/>) when null.</param>
    /// <exception cref="ArgumentException">The configuration is invalid.</exception>
    public ClipModel(ClipConfig config, ClipTokenizer? tokenizer = null) : base(nameof(ClipModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        Tokenizer = tokenizer ?? ClipTokenizer.Default;

        normalize = new ImageNormalization(config.ImageMean, config.ImageStd);
        visual = new VisionTransformer(config.ImageResolution, config.VisionPatchSize, config.VisionWidth,
            config.VisionLayers, config.ResolvedVisionHeads, config.EmbedDim, config.InputChannels);
        transformer = new ClipTransformer(config.TextWidth, config.TextLayers, config.ResolvedTextHeads, causal: true);
        token_embedding = nn.Embedding(config.VocabSize, config.TextWidth);
        positional_embedding = new Parameter(torch.zeros(config.ContextLength, config.TextWidth));
        ln_final = nn.LayerNorm(config.TextWidth);
        text_projection = new Parameter(torch.zeros(config.TextWidth, config.EmbedDim));
        logit_scale = new Parameter(torch.tensor((float)Math.Log(1 / 0.07)));
        RegisterComponents();
    }

    /// <summary>The image tower (state-dict prefix <c>visual.</c>); TeCoA checkpoints replace its weights.</summary>
    public VisionTransformer Visual => visual;

    /// <inheritdoc cref="IVisionLanguageBackbone.FeatureDim"/>
    public int FeatureDim => Config.EmbedDim;

    /// <inheritdoc/>
    public int ImageSize => Config.ImageResolution;

    /// <inheritdoc/>
    public int InputChannels => Config.InputChannels;

    /// <inheritdoc/>
    public (int Height, int Width) GridSize => (Config.GridSide, Config.GridSide);

    /// <inheritdoc/>
    public int EmbeddingDim => Config.TextWidth;

    /// <inheritdoc/>
    public int ContextLength => Config.ContextLength;

    /// <inheritdoc/>
    public int VisionWidth => Config.VisionWidth;

    /// <inheritdoc/>
    public int VisionLayers => Config.VisionLayers;

    /// <inheritdoc/>
    public int TextLayers => Config.TextLayers;

    /// <summary><c>exp(logit_scale)</c>, the multiplier of cosine similarities (about 100 in released CLIP): a new scalar tensor.</summary>
    public Tensor LogitScale => logit_scale.exp();

    /// <summary>
    /// Encodes images into the class feature <c>ln_post(cls) @ proj</c> <c>[B, D]</c> and the grid features
    /// <c>ln_post(patch tokens) @ proj</c> <c>[B, N, D]</c> (row-major), both unnormalised.
    /// </summary>
    /// <param name="images">Pixels <c>[B, C, H, W]</c> in [0, 1], floating point, <c>H = W = ImageSize</c>.</param>
    /// <remarks>An empty batch gives empty features. Pixel values are not checked (this runs at every attack step):
    /// a NaN stays in its own image's features; attacks and the evaluator refuse non-finite or out-of-range pixels once per call.</remarks>
    /// <exception cref="ArgumentException">The images have the wrong shape or dtype.</exception>
    public ImageFeatures EncodeImage(Tensor images) => EncodeImage(images, null);

    /// <summary>
    /// Encodes images as <see cref="EncodeImage(Tensor)"/> does, with deep vision prompts appended after the patch tokens
    /// and replaced at each layer (see <see cref="VisionTransformer.forward(Tensor, IDeepPromptProvider)"/>); the grid
    /// features are those of the patches only.
    /// </summary>
    /// <param name="images">Pixels <c>[B, C, H, W]</c> in [0, 1].</param>
    /// <param name="prompts">Per-layer prompts <c>[P, VisionWidth]</c>; null is exactly <see cref="EncodeImage(Tensor)"/>.</param>
    /// <exception cref="ArgumentException">The images or the prompt tokens have the wrong shape, dtype or device.</exception>
    public ImageFeatures EncodeImage(Tensor images, IDeepPromptProvider? prompts)
    {
        CheckImages(images);
        using var scope = torch.NewDisposeScope();
        var tokens = visual.forward(normalize.forward(images.to(visual.parameters().First().dtype)), prompts);
        var cls = tokens[.., 0].contiguous();
        var grid = tokens[.., 1..].contiguous();
        return new ImageFeatures(cls, grid).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public Tensor Tokenize(IReadOnlyList<string> texts) => Tokenizer.Tokenize(texts, Config.ContextLength);

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text) => Tokenizer.Encode(text);

    /// <inheritdoc/>
    public Tensor EmbedTokens(Tensor tokenIds)
    {
        CheckIds(tokenIds, nameof(tokenIds));
        return token_embedding.forward(tokenIds.to(device: token_embedding.weight!.device));
    }

    /// <summary>Encodes token ids <c>[n, L]</c> (<c>L &lt;= ContextLength</c>) into text features <c>[n, D]</c>, read at
    /// the end-of-text token (the largest id of each row).</summary>
    /// <exception cref="ArgumentException">The ids have the wrong shape or dtype.</exception>
    public Tensor EncodeText(Tensor tokenIds)
    {
        CheckIds(tokenIds, nameof(tokenIds));
        using var scope = torch.NewDisposeScope();
        return EncodeEmbeddings(EmbedTokens(tokenIds), tokenIds).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Encodes token embeddings <c>[n, L, EmbeddingDim]</c> (some of them learned, as in CoOp) into text features
    /// <c>[n, D]</c>: positional embedding, causal transformer, <c>ln_final</c>, then the end-of-text position
    /// (argmax of <paramref name="tokenIds"/>, as CLIP and CoOp take it) times <c>text_projection</c>.
    /// </summary>
    /// <param name="promptEmbeddings">Embeddings <c>[n, L, EmbeddingDim]</c>.</param>
    /// <param name="tokenIds">The <c>[n, L]</c> ids the embeddings stand for.</param>
    /// <exception cref="ArgumentException">Shapes do not fit.</exception>
    public Tensor EncodeEmbeddings(Tensor promptEmbeddings, Tensor tokenIds) => EncodeEmbeddings(promptEmbeddings, tokenIds, null);

    /// <summary>
    /// Encodes token embeddings as <see cref="EncodeEmbeddings(Tensor, Tensor)"/> does, with deep text prompts at positions
    /// <c>1..P</c> (right after the start token): layer 0's replace the embeddings there before the positional embedding
    /// (null keeps <paramref name="promptEmbeddings"/> as given), each later layer's replace the previous block's outputs
    /// there. The causal mask and the end-token pooling are unchanged; the prompts may not reach the end token.
    /// </summary>
    /// <param name="promptEmbeddings">Embeddings <c>[n, L, EmbeddingDim]</c>.</param>
    /// <param name="tokenIds">The <c>[n, L]</c> ids the embeddings stand for.</param>
    /// <param name="prompts">Per-layer prompts <c>[P, EmbeddingDim]</c>; null is exactly <see cref="EncodeEmbeddings(Tensor, Tensor)"/>.</param>
    /// <exception cref="ArgumentException">Shapes do not fit, or the prompts would overwrite an end token.</exception>
    public Tensor EncodeEmbeddings(Tensor promptEmbeddings, Tensor tokenIds, IDeepPromptProvider? prompts)
    {
        CheckIds(tokenIds, nameof(tokenIds));
        ArgumentNullException.ThrowIfNull(promptEmbeddings);
        TensorChecks.Require(promptEmbeddings, promptEmbeddings.dim() == 3 && promptEmbeddings.shape[0] == tokenIds.shape[0]
            && promptEmbeddings.shape[1] == tokenIds.shape[1] && promptEmbeddings.shape[2] == Config.TextWidth && promptEmbeddings.is_floating_point(),
            nameof(promptEmbeddings), $"floating-point [{tokenIds.shape[0]}, {tokenIds.shape[1]}, {Config.TextWidth}] to match tokenIds");
        using var scope = torch.NewDisposeScope();
        long n = tokenIds.shape[0], length = tokenIds.shape[1];
        Tensor x;
        if (prompts is null)
        {
            x = promptEmbeddings.Plus(positional_embedding[..(int)length].to(promptEmbeddings.dtype));
            x = transformer.forward(x);
        }
        else
        {
            var guarded = new EndTokenGuard(prompts, n == 0 ? long.MaxValue : tokenIds.argmax(-1).min().item<long>());
            var embeddings = promptEmbeddings;
            int count = 0;
            if (guarded.PromptTokens(PromptTower.Text, 0) is { } first)
            {
                embeddings = DeepPromptTokens.Replace(embeddings, first, 1, 0, PromptTower.Text, 0);
                count = (int)first.shape[^2];
            }
            x = embeddings.Plus(positional_embedding[..(int)length].to(promptEmbeddings.dtype));
            x = transformer.forward(x, guarded, PromptTower.Text, 1, count);
        }
        x = ln_final.forward(x);
        var eot = tokenIds.argmax(-1).to(x.device);
        var pooled = x[ScalarOps.Arange(n, device: x.device), eot];
        return pooled.matmul(text_projection).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Zero-shot logits <c>exp(logit_scale) * cos(image class feature, class text feature)</c>, <c>[B, K]</c>.
    /// </summary>
    /// <param name="images">Pixels <c>[B, C, H, W]</c> in [0, 1].</param>
    /// <param name="classTextFeatures">One text feature per class <c>[K, D]</c>, e.g. from <see cref="ClassTextFeatures"/>
    /// or <see cref="EncodeText"/>; normalised here.</param>
    public Tensor ZeroShotLogits(Tensor images, Tensor classTextFeatures)
    {
        ArgumentNullException.ThrowIfNull(classTextFeatures);
        TensorChecks.Require(classTextFeatures, classTextFeatures.dim() == 2 && classTextFeatures.shape[1] == FeatureDim, nameof(classTextFeatures), $"[K, {FeatureDim}]");
        using var scope = torch.NewDisposeScope();
        using var features = EncodeImage(images);
        return ScaledCosine(features.ClassFeature, classTextFeatures).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Text features of class names for zero-shot classification: each template (with <c>{0}</c> for the name) is
    /// encoded, normalised, averaged over templates and normalised again, as CLIP's prompt ensembling does.
    /// </summary>
    /// <param name="classNames">The class names.</param>
    /// <param name="templates">Templates such as <see cref="PromptTemplates.Default"/>; that single one when null.</param>
    /// <returns>Unit-norm features <c>[K, D]</c> (see <see cref="PromptTemplates.ClassFeatures"/>).</returns>
    /// <exception cref="ArgumentException">No class names, no templates, or a template without <c>{0}</c>.</exception>
    public Tensor ClassTextFeatures(IReadOnlyList<string> classNames, IReadOnlyList<string>? templates = null) =>
        PromptTemplates.ClassFeatures(this, classNames, templates ?? [PromptTemplates.Default]);

    /// <summary>CLIP's forward: logits per image <c>[B, n]</c> for images <c>[B, C, H, W]</c> and token ids <c>[n, L]</c>.</summary>
    public override Tensor forward(Tensor images, Tensor tokenIds)
    {
        using var scope = torch.NewDisposeScope();
        using var image = EncodeImage(images);
        return ScaledCosine(image.ClassFeature, EncodeText(tokenIds)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Initialises every weight for training from scratch with CLIP's scheme (normal draws whose deviations
    /// scale with width and depth, <c>logit_scale = ln(1/0.07)</c>), applied to both towers.
    /// </summary>
    /// <param name="seed">Seed of a private generator: same seed, same weights on CPU.</param>
    public void InitializeParameters(long seed)
    {
        using var generator = new Generator((ulong)seed);
        using var scope = torch.NewDisposeScope(); // the random draws are temporaries
        using var noGrad = torch.no_grad();
        void Normal(Tensor t, double std) =>
            t.copy_(torch.randn(t.shape, generator: generator, dtype: t.dtype).Times(std));

        Normal(token_embedding.weight!, 0.02);
        Normal(positional_embedding, 0.01);
        Normal(text_projection, Math.Pow(Config.TextWidth, -0.5));
        logit_scale.Fill_(Math.Log(1 / 0.07));
        foreach (var (name, p) in named_parameters())
        {
            if (name.StartsWith("transformer.", StringComparison.Ordinal))
                InitBlockParameter(name, p, Config.TextWidth, Config.TextLayers, Normal);
            else if (name.StartsWith("visual.transformer.", StringComparison.Ordinal))
                InitBlockParameter(name, p, Config.VisionWidth, Config.VisionLayers, Normal);
        }
        double scale = Math.Pow(Config.VisionWidth, -0.5);
        var vis = visual.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter);
        Normal(vis["class_embedding"], scale);
        Normal(vis["positional_embedding"], scale);
        Normal(vis["proj"], scale);
        int fanIn = Config.InputChannels * Config.VisionPatchSize * Config.VisionPatchSize;
        Normal(vis["conv1.weight"], Math.Pow(fanIn, -0.5));
    }

    private static void InitBlockParameter(string name, Tensor p, int width, int layers, Action<Tensor, double> normal)
    {
        double projStd = Math.Pow(width, -0.5) * Math.Pow(2 * layers, -0.5);
        double attnStd = Math.Pow(width, -0.5);
        double fcStd = Math.Pow(2 * width, -0.5);
        if (name.EndsWith("attn.in_proj_weight", StringComparison.Ordinal)) normal(p, attnStd);
        else if (name.EndsWith("attn.out_proj.weight", StringComparison.Ordinal)) normal(p, projStd);
        else if (name.EndsWith("mlp.c_fc.weight", StringComparison.Ordinal)) normal(p, fcStd);
        else if (name.EndsWith("mlp.c_proj.weight", StringComparison.Ordinal)) normal(p, projStd);
        else if (name.EndsWith(".bias", StringComparison.Ordinal) && !name.Contains(".ln_", StringComparison.Ordinal)) p.zero_();
    }

    // Text prompts sit at 1..P: refuses any that would overwrite an end token, whose output is the text feature.
    private sealed class EndTokenGuard(IDeepPromptProvider inner, long firstEnd) : IDeepPromptProvider
    {
        public Tensor? PromptTokens(PromptTower tower, int layer)
        {
            var tokens = inner.PromptTokens(tower, layer);
            if (tokens is not null && tokens.dim() >= 2 && 1 + tokens.shape[^2] > firstEnd)
                throw new ArgumentException(
                    $"The text prompt tokens of layer {layer} ({tokens.shape[^2]} from position 1) would overwrite an end token at position {firstEnd}; " +
                    $"every prompt needs at least {tokens.shape[^2]} tokens between its start and end tokens.", "prompts");
            return tokens;
        }
    }

    private Tensor ScaledCosine(Tensor imageFeatures, Tensor textFeatures)
    {
        var i = nn.functional.normalize(imageFeatures, dim: -1);
        var t = nn.functional.normalize(textFeatures.to(i.dtype, i.device), dim: -1);
        return logit_scale.exp() * i.matmul(t.t());
    }

    private void CheckImages(Tensor images) => TensorChecks.RequireImages(images, nameof(images), InputChannels, ImageSize);

    private void CheckIds(Tensor ids, string name)
    {
        ArgumentNullException.ThrowIfNull(ids, name);
        TensorChecks.Require(ids, ids.dim() == 2 && ids.shape[1] <= Config.ContextLength && ids.shape[1] > 0
            && (ids.dtype == ScalarType.Int64 || ids.dtype == ScalarType.Int32), name, $"int64 [n, L] with 1 <= L <= {Config.ContextLength}");
    }
}
