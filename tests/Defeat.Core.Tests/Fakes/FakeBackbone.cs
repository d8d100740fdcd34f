using Defeat.Backbones;
using TorchSharp.Modules;
using static TorchSharp.torch.nn;

namespace Defeat.Tests.Fakes;

/// <summary>
/// A tiny vision-language backbone for tests: a patch-embedding image encoder (class feature =
/// linear map of the mean patch), a word-level tokenizer over a fixed vocabulary, a token embedding
/// table and a text encoder that averages position-aware token features up to the end token.
/// </summary>
internal sealed class FakeBackbone : Module, IVisionLanguageBackbone
{
    public const int PadId = 0;
    public const int StartId = 1;

    private static readonly string[] Words =
    {
        ".", ",", "x", "a", "photo", "of", "the", "cat", "dog", "red", "car", "small", "bird", "sea", "lion", "picture", "type", "pet",
    };

    private readonly Dictionary<string, int> _vocabulary;
    private readonly int _endId;
    private readonly Conv2d patch_embed;
    private readonly Linear class_proj;
    private readonly Embedding token_embedding;
    private readonly Parameter positional_embedding;
    private readonly Linear text_mix;
    private readonly Linear text_projection;
    private readonly Tensor logit_scale;

    public FakeBackbone(int featureDim = 8, int embeddingDim = 6, int imageSize = 12, int patchSize = 4, int contextLength = 24, int seed = 0)
        : base(nameof(FakeBackbone))
    {
        manual_seed(seed);
        FeatureDim = featureDim;
        EmbeddingDim = embeddingDim;
        ImageSize = imageSize;
        ContextLength = contextLength;
        GridSize = (imageSize / patchSize, imageSize / patchSize);
        _vocabulary = Words.Select((w, i) => (w, i + 2)).ToDictionary(p => p.w, p => p.Item2);
        _endId = Words.Length + 2; // the highest id, as CLIP's end token
        patch_embed = Conv2d(3, featureDim, patchSize, stride: patchSize);
        class_proj = Linear(featureDim, featureDim);
        token_embedding = Embedding(_endId + 1, embeddingDim);
        positional_embedding = new Parameter(randn(contextLength, embeddingDim).Times(0.1));
        text_mix = Linear(embeddingDim, embeddingDim);
        text_projection = Linear(embeddingDim, featureDim);
        logit_scale = tensor(10f);
        RegisterComponents();
        foreach (var p in parameters()) p.requires_grad = false;
        eval();
    }

    public int FeatureDim { get; }
    public int EmbeddingDim { get; }
    public int ContextLength { get; }
    public int ImageSize { get; }
    public int InputChannels => 3;
    public (int Height, int Width) GridSize { get; }
    public Tensor LogitScale => logit_scale;

    public ImageFeatures EncodeImage(Tensor images)
    {
        var normalised = images.Minus(0.5).Over(0.25);
        // The patch embedding as a matmul over unfolded patches (as ClipModel computes it), not oneDNN's convolution,
        // whose backward pass is wrong with 3 input channels on some CPUs (see PatchConv).
        long patch = patch_embed.weight!.shape[^1];
        var patches = functional.unfold(normalised, patch, stride: patch); // [B, 3 p p, N]
        var grid = patches.transpose(1, 2).matmul(patch_embed.weight!.flatten(1).t()).Plus(patch_embed.bias!); // [B, N, D]
        var classFeature = class_proj.call(grid.mean(new long[] { 1 }).tanh());
        return new ImageFeatures(classFeature, grid);
    }

    public IReadOnlyList<int> Encode(string text)
    {
        var tokens = new List<int>();
        foreach (var raw in text.ToLowerInvariant().Replace(".", " . ").Replace(",", " , ").Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!_vocabulary.TryGetValue(raw, out var id))
                throw new ArgumentException($"FakeBackbone does not know the word \"{raw}\".", nameof(text));
            tokens.Add(id);
        }
        return tokens;
    }

    public Tensor Tokenize(IReadOnlyList<string> texts)
    {
        var ids = new long[texts.Count, ContextLength];
        for (var i = 0; i < texts.Count; i++)
        {
            var tokens = Encode(texts[i]);
            if (tokens.Count + 2 > ContextLength) throw new ArgumentException($"\"{texts[i]}\" is too long.", nameof(texts));
            ids[i, 0] = StartId;
            for (var j = 0; j < tokens.Count; j++) ids[i, j + 1] = tokens[j];
            ids[i, tokens.Count + 1] = _endId;
        }
        return tensor(ids);
    }

    public Tensor EmbedTokens(Tensor tokenIds) => token_embedding.call(tokenIds);

    public Tensor EncodeText(Tensor tokenIds) => EncodeEmbeddings(EmbedTokens(tokenIds), tokenIds);

    public Tensor EncodeEmbeddings(Tensor promptEmbeddings, Tensor tokenIds)
    {
        var x = text_mix.call(promptEmbeddings.Plus(positional_embedding)).tanh();
        // Mean over the positions up to and including the end token (the highest id).
        var end = tokenIds.argmax(1).unsqueeze(1);
        var positions = ScalarOps.Arange(tokenIds.shape[1], device: tokenIds.device).unsqueeze(0);
        var mask = positions.le(end).to_type(x.dtype).unsqueeze(2);
        var pooled = (x * mask).sum(1) / mask.sum(1);
        return text_projection.call(pooled);
    }
}
