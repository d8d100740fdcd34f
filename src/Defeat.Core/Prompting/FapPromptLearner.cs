using Defeat.Backbones;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Defeat.Prompting;

/// <summary>
/// Deep multimodal prompts of FAP (Zhou et al., NeurIPS 2024), built as MaPLe builds them: a text context of
/// <c>P</c> tokens takes the place of the first words of a hand-written prompt; a linear layer projects it to the
/// vision width as layer 0's vision prompt; for layers <c>1 .. Depth - 1</c>, compound prompts are learned on one
/// side and projected to the other by one linear layer per layer. Each prompted layer's tokens replace the previous
/// layer's (see <see cref="IDeepPromptProvider"/>).
/// </summary>
/// <remarks>
/// <para>Parameters (state-dict keys as in the official code): <c>ctx</c> <c>[P, E]</c>; <c>proj</c> (E to the vision
/// width, with vision prompts); <c>compound_prompts_image.{i}</c> <c>[P, VisionWidth]</c> (learned side Vision) or
/// <c>compound_prompts_text.{i}</c> <c>[P, E]</c> (learned side Text); <c>compound_prompt_projections.{i}</c>.</para>
/// <para>The backbone is held by reference, not registered: this module's parameters are the prompts only.</para>
/// </remarks>
public sealed class FapPromptLearner : nn.Module
{
#pragma warning disable IDE1006 // PyTorch names: they are the state-dict keys.
    private readonly Parameter ctx;
    private readonly Linear? proj;
    private readonly ParameterList? compound_prompts_image;
    private readonly ParameterList? compound_prompts_text;
    private readonly ModuleList<Linear>? compound_prompt_projections;
#pragma warning restore IDE1006
    private readonly BackboneReference _backbone;

    /// <summary>Builds the prompts for <paramref name="classNames"/> on <paramref name="backbone"/>.</summary>
    /// <param name="backbone">The frozen backbone; it must take deep prompts (<see cref="IDeepPromptBackbone"/>).</param>
    /// <param name="classNames">Class names in label order; underscores become spaces.</param>
    /// <param name="options">Options; FAP's defaults when null.</param>
    /// <exception cref="ArgumentException">The backbone cannot take deep prompts, the depth exceeds a tower's blocks, a class
    /// name is empty, or the context phrase has fewer tokens than <see cref="FapPromptLearnerOptions.ContextLength"/>.</exception>
    public FapPromptLearner(IVisionLanguageBackbone backbone, IReadOnlyList<string> classNames, FapPromptLearnerOptions? options = null)
        : base(nameof(FapPromptLearner))
    {
        ArgumentNullException.ThrowIfNull(backbone);
        ArgumentNullException.ThrowIfNull(classNames);
        Options = options ?? new FapPromptLearnerOptions();
        Options.Validate();
        if (backbone is not IDeepPromptBackbone deep)
            throw new ArgumentException(
                $"The backbone {backbone.GetType().Name} cannot take deep prompts: FAP needs a backbone that implements {nameof(IDeepPromptBackbone)} (Defeat.Clip's ClipModel does).",
                nameof(backbone));
        if (Options.Depth > deep.TextLayers || (Options.VisionPrompts && Options.Depth > deep.VisionLayers))
            throw new ArgumentException(
                $"Depth {Options.Depth} exceeds the backbone's blocks (text {deep.TextLayers}, vision {deep.VisionLayers}); expected at most " +
                $"{(Options.VisionPrompts ? Math.Min(deep.TextLayers, deep.VisionLayers) : deep.TextLayers)}.", nameof(options));
        if (classNames.Count == 0)
            throw new ArgumentException("classNames must hold at least one class name, got none.", nameof(classNames));
        for (var i = 0; i < classNames.Count; i++)
            if (string.IsNullOrWhiteSpace(classNames[i]))
                throw new ArgumentException($"classNames[{i}] must be a non-empty name, got \"{classNames[i]}\".", nameof(classNames));

        _backbone = new BackboneReference(deep);
        ClassNames = classNames.Select(n => n.Replace('_', ' ')).ToArray();
        int p = Options.ContextLength, e = deep.EmbeddingDim, v = deep.VisionWidth;
        using var generator = new Generator(Options.Seed);
        using var _ = no_grad();

        string prefix;
        Tensor context;
        if (Options.ContextInit is { } phrase)
        {
            prefix = phrase.Replace('_', ' ').Trim();
            int phraseTokens = deep.Encode(prefix).Count;
            if (phraseTokens < p)
                throw new ArgumentException($"ContextInit \"{prefix}\" has {phraseTokens} tokens; ContextLength {p} needs at least that many.", nameof(options));
            context = deep.EmbedTokens(deep.Tokenize(new[] { prefix }))[0, 1..(1 + p)].detach().clone();
        }
        else
        {
            prefix = string.Join(" ", Enumerable.Repeat(Options.Placeholder, p));
            if (deep.Encode(prefix).Count != p)
                throw new ArgumentException($"The placeholder \"{Options.Placeholder}\" must be one token for this tokenizer; " +
                    $"{p} of them gave {deep.Encode(prefix).Count} tokens.", nameof(options));
            context = randn(new long[] { p, e }, generator: generator).Times(Options.InitStd);
        }

        var tokenIds = deep.Tokenize(ClassNames.Select(n => $"{prefix} {n}.").ToArray());
        var embedding = deep.EmbedTokens(tokenIds).detach();
        var dtype = embedding.dtype;
        var device = embedding.device;
        ctx = new Parameter(context.to(dtype, device), requires_grad: true);

        int deeper = Options.Depth - 1;
        if (Options.VisionPrompts)
        {
            proj = SeededLinear(e, v, generator, dtype, device);
            bool learnVision = Options.LearnedSide == CompoundPromptSide.Vision;
            var learned = Enumerable.Range(0, deeper)
                .Select(_ => new Parameter(randn(new long[] { p, learnVision ? v : e }, generator: generator).Times(Options.InitStd).to(dtype, device)))
                .ToArray();
            if (learnVision) compound_prompts_image = nn.ParameterList(learned);
            else compound_prompts_text = nn.ParameterList(learned);
            compound_prompt_projections = nn.ModuleList(Enumerable.Range(0, deeper)
                .Select(_ => learnVision ? SeededLinear(v, e, generator, dtype, device) : SeededLinear(e, v, generator, dtype, device)).ToArray());
        }
        else
        {
            compound_prompts_text = nn.ParameterList(Enumerable.Range(0, deeper)
                .Select(_ => new Parameter(randn(new long[] { p, e }, generator: generator).Times(Options.InitStd).to(dtype, device))).ToArray());
        }

        register_buffer("token_prefix", embedding[.., ..1].clone(), persistent: false);
        register_buffer("token_suffix", embedding[.., (1 + p)..].clone(), persistent: false);
        register_buffer("tokenized_prompts", tokenIds, persistent: false);
        RegisterComponents();
    }

    /// <summary>The validated options.</summary>
    public FapPromptLearnerOptions Options { get; }

    /// <summary>The class names, in label order (underscores replaced by spaces).</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>The backbone the prompts are built for (not a registered submodule).</summary>
    public IDeepPromptBackbone Backbone => _backbone.Backbone;

    /// <summary>The learned text context of layer 0, <c>[P, E]</c>.</summary>
    public Parameter Context => ctx;

    /// <summary>Token ids <c>[classes, L]</c> of the class prompts.</summary>
    public Tensor TokenIds => get_buffer("tokenized_prompts")!;

    /// <summary>
    /// Builds one forward's prompts: the class prompt embeddings <c>[SOS] ctx rest-of-phrase name . [EOS]</c>, layer 0's
    /// vision prompt <c>proj(ctx)</c>, and for layers <c>1 .. Depth - 1</c> the learned compound prompts with their projections.
    /// </summary>
    public DeepPrompts BuildPrompts()
    {
        var prefix = get_buffer("token_prefix")!;
        var suffix = get_buffer("token_suffix")!;
        var context = ctx.unsqueeze(0).expand(ClassNames.Count, -1, -1);
        var embeddings = cat(new[] { prefix, context, suffix }, 1);

        int depth = Options.Depth;
        var text = new Tensor?[depth];
        var vision = Options.VisionPrompts ? new Tensor?[depth] : Array.Empty<Tensor?>();
        if (Options.VisionPrompts) vision[0] = proj!.forward(ctx);
        for (int layer = 1; layer < depth; layer++)
        {
            if (compound_prompts_image is not null)
            {
                vision[layer] = compound_prompts_image[layer - 1];
                text[layer] = compound_prompt_projections![layer - 1].forward(compound_prompts_image[layer - 1]);
            }
            else
            {
                text[layer] = compound_prompts_text![layer - 1];
                if (Options.VisionPrompts)
                    vision[layer] = compound_prompt_projections![layer - 1].forward(compound_prompts_text[layer - 1]);
            }
        }
        return new DeepPrompts(embeddings, TokenIds, text, vision);
    }

    /// <summary>Text features <c>[classes, D]</c> of <paramref name="prompts"/> (not normalised), through the backbone's deep-prompted text encoder.</summary>
    /// <param name="prompts">Prompts from <see cref="BuildPrompts"/>.</param>
    public Tensor EncodeTextFeatures(DeepPrompts prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        return Backbone.EncodeEmbeddings(prompts.PromptEmbeddings, prompts.TokenIds, prompts);
    }

    // PyTorch's nn.Linear default: weight and bias uniform in +-1/sqrt(fan_in), drawn here from the seeded generator.
    private static Linear SeededLinear(int inputs, int outputs, Generator generator, ScalarType dtype, Device device)
    {
        var layer = nn.Linear(inputs, outputs, dtype: dtype, device: device);
        double bound = 1 / Math.Sqrt(inputs);
        layer.weight!.copy_(rand(new long[] { outputs, inputs }, generator: generator).Times(2).Minus(1).Times(bound));
        layer.bias!.copy_(rand(new long[] { outputs }, generator: generator).Times(2).Minus(1).Times(bound));
        return layer;
    }

    // Keeps the backbone out of RegisterComponents: its parameters must not join this module's.
    private sealed class BackboneReference(IDeepPromptBackbone backbone)
    {
        public IDeepPromptBackbone Backbone { get; } = backbone;
    }
}
