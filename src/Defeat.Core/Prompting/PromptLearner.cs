using Defeat.Backbones;
using Defeat.Validation;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Defeat.Prompting;

/// <summary>
/// CoOp-style prompt learner (DEFEAT's text side): M learned context vectors take the place of
/// the words of a hand-written prompt, <c>[SOS] ctx_1 .. ctx_M classname . [EOS]</c>, and the frozen
/// text encoder turns the prompts into class features.
/// </summary>
/// <remarks>
/// <para>The only parameter is <c>ctx</c> (<c>[M, E]</c> shared, or <c>[classes, M, E]</c> class-specific), named as
/// in the official <c>VLPromptLearner</c>, so an official checkpoint's <c>prompt_learner.ctx</c> loads directly.
/// The frozen token embeddings around the context (<c>token_prefix</c>, <c>token_suffix</c>), the token ids
/// (<c>tokenized_prompts</c>) and the hand-written prompt features (<c>text_features</c>) are non-persistent
/// buffers: they move with the module but are rebuilt from the class names instead of being saved.</para>
/// <para>The text encoder is held by reference and not registered as a submodule, so this module's state dict
/// and parameters are the context only; the encoder must live on the same device.</para>
/// </remarks>
public sealed class PromptLearner : nn.Module, IPromptLearner
{
    private readonly Parameter ctx;
    // Outside the module tree: the frozen encoder must not join this module's parameters.
    private readonly Unregistered<ITextEncoder> _encoder;
    private readonly int[] _nameLengths;

    /// <summary>Builds the prompts for <paramref name="classNames"/> and computes the hand-written prompt features once.</summary>
    /// <param name="textEncoder">The backbone's frozen text encoder (tokenizer, token embedding, transformer).</param>
    /// <param name="classNames">Class names in label order; underscores become spaces.</param>
    /// <param name="options">Options; <see cref="PromptLearnerOptions"/> defaults when null.</param>
    public PromptLearner(ITextEncoder textEncoder, IReadOnlyList<string> classNames, PromptLearnerOptions? options = null)
        : base(nameof(PromptLearner))
    {
        ArgumentNullException.ThrowIfNull(textEncoder);
        ArgumentNullException.ThrowIfNull(classNames);
        Options = options ?? new PromptLearnerOptions();
        Options.Validate();
        if (classNames.Count == 0)
            throw new ArgumentException("classNames must hold at least one class name, got none.", nameof(classNames));
        for (var i = 0; i < classNames.Count; i++)
            if (string.IsNullOrWhiteSpace(classNames[i]))
                throw new ArgumentException($"classNames[{i}] must be a non-empty name, got \"{classNames[i]}\".", nameof(classNames));

        _encoder = new(textEncoder);
        ClassNames = classNames.Select(n => n.Replace('_', ' ')).ToArray();
        _nameLengths = ClassNames.Select(n => textEncoder.Encode(n).Count).ToArray();

        using var _ = no_grad();
        string prefix;
        Tensor vectors;
        if (Options.ContextInit is { } phrase)
        {
            prefix = phrase.Replace('_', ' ').Trim();
            ContextLength = textEncoder.Encode(prefix).Count;
            // Token 0 is the start token; the phrase's tokens follow it.
            var phraseEmbedding = textEncoder.EmbedTokens(textEncoder.Tokenize(new[] { prefix }));
            vectors = phraseEmbedding[0, 1..(1 + ContextLength)].detach().clone();
            if (Options.ClassSpecificContext)
                vectors = vectors.unsqueeze(0).repeat(ClassNames.Count, 1, 1);
        }
        else
        {
            ContextLength = Options.ContextLength;
            prefix = string.Join(" ", Enumerable.Repeat(Options.Placeholder, ContextLength));
            if (textEncoder.Encode(prefix).Count != ContextLength)
                throw new ArgumentException($"The placeholder \"{Options.Placeholder}\" must be one token for this tokenizer; " +
                    $"{ContextLength} of them gave {textEncoder.Encode(prefix).Count} tokens.", nameof(options));
            long[] shape = Options.ClassSpecificContext
                ? new long[] { ClassNames.Count, ContextLength, textEncoder.EmbeddingDim }
                : new long[] { ContextLength, textEncoder.EmbeddingDim };
            using var generator = new Generator(Options.Seed);
            vectors = randn(shape, generator: generator).Times(Options.InitStd);
        }

        var prompts = ClassNames.Select(n => $"{prefix} {n}.").ToArray();
        var tokenIds = textEncoder.Tokenize(prompts);
        var embedding = textEncoder.EmbedTokens(tokenIds).detach();
        vectors = vectors.to(embedding.dtype, embedding.device);
        ctx = new Parameter(vectors, requires_grad: true);

        register_buffer("token_prefix", embedding[.., ..1].clone(), persistent: false);
        register_buffer("token_suffix", embedding[.., (1 + ContextLength)..].clone(), persistent: false);
        register_buffer("tokenized_prompts", tokenIds, persistent: false);
        register_buffer("text_features", PromptTemplates.ClassFeatures(textEncoder, ClassNames, Options.Templates), persistent: false);
        RegisterComponents();
    }

    /// <summary>The validated options.</summary>
    public PromptLearnerOptions Options { get; }

    /// <summary>Number M of learned context vectors.</summary>
    public int ContextLength { get; }

    /// <inheritdoc />
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>The learned context: <c>[M, E]</c> shared or <c>[classes, M, E]</c> class-specific.</summary>
    public Parameter Context => ctx;

    /// <inheritdoc />
    public Tensor TokenIds => get_buffer("tokenized_prompts")!;

    /// <inheritdoc />
    public Tensor HandcraftedTextFeatures => get_buffer("text_features")!;

    /// <inheritdoc />
    public Tensor BuildPromptEmbeddings()
    {
        var prefix = get_buffer("token_prefix")!;
        var suffix = get_buffer("token_suffix")!;
        var classes = ClassNames.Count;
        var context = ctx.dim() == 2 ? ctx.unsqueeze(0).expand(classes, -1, -1) : (Tensor)ctx;

        if (Options.ClassTokenPosition == ClassTokenPosition.End)
            return cat(new[] { prefix, context, suffix }, 1);

        // The suffix starts with the class name's tokens; move them in front of (or into) the context.
        using var scope = NewDisposeScope();
        var rows = new Tensor[classes];
        var half = ContextLength / 2;
        for (var i = 0; i < classes; i++)
        {
            var n = _nameLengths[i];
            var start = prefix[i..(i + 1)];
            var name = suffix[i..(i + 1), ..n];
            var rest = suffix[i..(i + 1), n..];
            var c = context[i..(i + 1)];
            rows[i] = Options.ClassTokenPosition == ClassTokenPosition.Front
                ? cat(new[] { start, name, c, rest }, 1)
                : cat(new[] { start, c[.., ..half], name, c[.., half..], rest }, 1);
        }
        return cat(rows, 0).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public Tensor EncodeTextFeatures() => _encoder.Value.EncodeEmbeddings(BuildPromptEmbeddings(), TokenIds);

    /// <inheritdoc />
    public Tensor TextRegularizationLoss(Tensor normalizedTextFeatures)
    {
        ArgumentNullException.ThrowIfNull(normalizedTextFeatures);
        var target = HandcraftedTextFeatures;
        TensorChecks.Require(normalizedTextFeatures, normalizedTextFeatures.shape.SequenceEqual(target.shape), nameof(normalizedTextFeatures),
            $"{TensorChecks.Shape(target)} (classes, D)");
        return nn.functional.l1_loss(normalizedTextFeatures, target);
    }
}
