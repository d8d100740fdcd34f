using Defeat.Backbones;
using Defeat.Clip;

namespace Defeat.Tests.Clip;

/// <summary>Deep prompts in both CLIP towers against a forward written out here from the state dict (MaPLe's layout).</summary>
public class DeepPromptTests
{
    private const int Width = 32, Heads = 2, Layers = 3;

    private static ClipModel TinyClip()
    {
        var clip = new ClipModel(ClipConfig.Tiny(imageResolution: 8, patchSize: 4, inputChannels: 1, width: Width, layers: Layers, heads: Heads, embedDim: 16, contextLength: 12));
        clip.InitializeParameters(seed: 5);
        clip.eval();
        return clip;
    }

    // A provider from explicit per-layer lists that records what it was asked.
    private sealed class ListProvider(Tensor?[] text, Tensor?[] vision) : IDeepPromptProvider
    {
        public List<(PromptTower, int)> Asked { get; } = [];

        public Tensor? PromptTokens(PromptTower tower, int layer)
        {
            Asked.Add((tower, layer));
            var list = tower == PromptTower.Text ? text : vision;
            return layer < list.Length ? list[layer] : null;
        }
    }

    // ---- the reference forward, from the state dict only ----
    private static Tensor LayerNorm(Dictionary<string, Tensor> w, string name, Tensor x) =>
        nn.functional.layer_norm(x, [x.shape[^1]], w[name + ".weight"], w[name + ".bias"], 1e-5);

    private static Tensor Block(Dictionary<string, Tensor> w, string p, Tensor x, bool causal)
    {
        long b = x.shape[0], l = x.shape[1], d = Width / Heads;
        var h = LayerNorm(w, p + "ln_1", x);
        var qkv = h.matmul(w[p + "attn.in_proj_weight"].t()).Plus(w[p + "attn.in_proj_bias"]);
        Tensor Split(int i) => qkv[.., .., (i * Width)..((i + 1) * Width)].reshape(b, l, Heads, d).transpose(1, 2);
        var scores = Split(0).matmul(Split(1).transpose(-2, -1)).Over(Math.Sqrt(d));
        if (causal) scores = scores.Plus(ScalarOps.Full([l, l], float.NegativeInfinity).triu(1));
        var attended = scores.softmax(-1).matmul(Split(2)).transpose(1, 2).reshape(b, l, Width);
        x = x.Plus(attended.matmul(w[p + "attn.out_proj.weight"].t())).Plus(w[p + "attn.out_proj.bias"]);
        var fc = LayerNorm(w, p + "ln_2", x).matmul(w[p + "mlp.c_fc.weight"].t()).Plus(w[p + "mlp.c_fc.bias"]);
        fc = fc * sigmoid(fc.Times(1.702));
        return x.Plus(fc.matmul(w[p + "mlp.c_proj.weight"].t())).Plus(w[p + "mlp.c_proj.bias"]);
    }

    private static (Tensor Cls, Tensor Grid) ReferenceImage(ClipModel clip, Tensor images, Tensor?[] vision)
    {
        var w = clip.state_dict();
        var x = images.Minus(clip.Config.ImageMean[0]).Over(clip.Config.ImageStd[0]);
        var patches = nn.functional.conv2d(x, w["visual.conv1.weight"], strides: [4, 4]).flatten(2).transpose(1, 2);
        long b = images.shape[0], n = patches.shape[1];
        var tokens = cat([w["visual.class_embedding"].expand(b, 1, -1), patches], 1).Plus(w["visual.positional_embedding"]);
        if (vision.Length > 0 && vision[0] is { } v0) tokens = cat([tokens, v0.expand(b, -1, -1)], 1);
        tokens = LayerNorm(w, "visual.ln_pre", tokens);
        for (int i = 0; i < Layers; i++)
        {
            if (i > 0 && i < vision.Length && vision[i] is { } vi)
                tokens = cat([tokens[.., ..(int)(1 + n)], vi.expand(b, -1, -1)], 1);
            tokens = Block(w, $"visual.transformer.resblocks.{i}.", tokens, causal: false);
        }
        var outs = LayerNorm(w, "visual.ln_post", tokens[.., ..(int)(1 + n)]).matmul(w["visual.proj"]);
        return (outs[.., 0], outs[.., 1..]);
    }

    private static Tensor ReferenceText(ClipModel clip, Tensor embeddings, Tensor ids, Tensor?[] text)
    {
        var w = clip.state_dict();
        long n = ids.shape[0], l = ids.shape[1];
        var x = embeddings;
        if (text.Length > 0 && text[0] is { } t0)
            x = cat([x[.., ..1], t0.expand(n, -1, -1), x[.., (int)(1 + t0.shape[0])..]], 1);
        x = x.Plus(w["positional_embedding"][..(int)l]);
        for (int i = 0; i < Layers; i++)
        {
            if (i > 0 && i < text.Length && text[i] is { } ti)
                x = cat([x[.., ..1], ti.expand(n, -1, -1), x[.., (int)(1 + ti.shape[0])..]], 1);
            x = Block(w, $"transformer.resblocks.{i}.", x, causal: true);
        }
        x = LayerNorm(w, "ln_final", x);
        return x[ScalarOps.Arange(n), ids.argmax(-1)].matmul(w["text_projection"]);
    }

    private static Tensor Tokens(long p, long width, int seed) => randn([p, width], generator: new Generator((ulong)seed));

    [Test]
    public void VisionPromptsAreAppendedAfterThePatchesAndReplacedPerLayer()
    {
        using var clip = TinyClip();
        var images = rand([2, 1, 8, 8], generator: new Generator(1));
        Tensor?[] vision = [Tokens(2, Width, 10), Tokens(2, Width, 11), null];
        var provider = new ListProvider([], vision);
        using var got = clip.EncodeImage(images, provider);
        var (cls, grid) = ReferenceImage(clip, images, vision);
        Assert.That(got.ClassFeature.allclose(cls, 1e-5, 1e-5), Is.True);
        Assert.That(got.GridFeatures.shape, Is.EqualTo(new long[] { 2, 4, 16 }), "the grid holds the patches only");
        Assert.That(got.GridFeatures.allclose(grid, 1e-5, 1e-5), Is.True);
        Assert.That(provider.Asked, Is.EqualTo(new[] { (PromptTower.Vision, 0), (PromptTower.Vision, 1), (PromptTower.Vision, 2) }));

        // Accumulating (appending layer 1's prompts again) would be another function: the reference that appends differs.
        var w = clip.state_dict();
        var (plain, _) = ReferenceImage(clip, images, [vision[0], null, null]);
        Assert.That(got.ClassFeature.allclose(plain, 1e-4, 1e-4), Is.False, "layer 1's prompts change the output");
    }

    [Test]
    public void TextPromptsReplaceTheTokensAfterTheStartTokenAtLaterLayers()
    {
        using var clip = TinyClip();
        var ids = clip.Tokenize(["a photo of a cat.", "a photo of a big dog."]);
        var embeddings = clip.EmbedTokens(ids);
        Tensor?[] text = [null, Tokens(2, Width, 20), Tokens(2, Width, 21)];
        var got = clip.EncodeEmbeddings(embeddings, ids, new ListProvider(text, []));
        Assert.That(got.allclose(ReferenceText(clip, embeddings, ids, text), 1e-5, 1e-5), Is.True);
        Assert.That(got.allclose(clip.EncodeEmbeddings(embeddings, ids), 1e-3, 1e-3), Is.False, "the prompts take effect");

        // Layer 0's text prompts replace the embeddings at 1..P before the positional embedding.
        Tensor?[] withInput = [Tokens(3, Width, 22), Tokens(3, Width, 23)];
        var got0 = clip.EncodeEmbeddings(embeddings, ids, new ListProvider(withInput, []));
        Assert.That(got0.allclose(ReferenceText(clip, embeddings, ids, withInput), 1e-5, 1e-5), Is.True);
    }

    [Test]
    public void AProviderThatGivesNothingLeavesBothTowersAsToday()
    {
        using var clip = TinyClip();
        var images = rand([3, 1, 8, 8], generator: new Generator(2));
        var empty = new ListProvider([], []);
        using var plain = clip.EncodeImage(images);
        using var prompted = clip.EncodeImage(images, empty);
        Assert.That(prompted.ClassFeature.allclose(plain.ClassFeature, 1e-6, 1e-6), Is.True);
        var ids = clip.Tokenize(["a cat."]);
        Assert.That(clip.EncodeEmbeddings(clip.EmbedTokens(ids), ids, empty).allclose(clip.EncodeText(ids), 1e-6, 1e-6), Is.True);
        // And the plain path against the reference: nothing changed for callers without prompts.
        Assert.That(plain.ClassFeature.allclose(ReferenceImage(clip, images, []).Cls, 1e-5, 1e-5), Is.True);
    }

    [Test]
    public void BadPromptsAreRefusedWithTheShapes()
    {
        using var clip = TinyClip();
        var images = rand([1, 1, 8, 8]);
        var wrongWidth = Assert.Throws<ArgumentException>(() => clip.EncodeImage(images, new ListProvider([], [zeros(2, 7)])))!;
        Assert.That(wrongWidth.Message, Does.Contain("[P, 32]").And.Contain("[2, 7]"));
        var recount = Assert.Throws<ArgumentException>(() => clip.EncodeImage(images, new ListProvider([], [zeros(2, Width), zeros(3, Width)])))!;
        Assert.That(recount.Message, Does.Contain("number 3").And.Contain("placed 2"));
        var late = Assert.Throws<InvalidOperationException>(() => clip.EncodeImage(images, new ListProvider([], [null, zeros(2, Width)])))!;
        Assert.That(late.Message, Does.Contain("layer 1").And.Contain("none for layer 0"));
        var ids = clip.Tokenize(["cat"]); // [SOS] cat [EOT]: the end token sits at 2
        var overEnd = Assert.Throws<ArgumentException>(() => clip.EncodeEmbeddings(clip.EmbedTokens(ids), ids, new ListProvider([null, zeros(2, Width)], [])))!;
        Assert.That(overEnd.Message, Does.Contain("end token at position 2"));
    }

    [Test]
    public void GradientsReachThePromptsAndNeverTheFrozenWeights()
    {
        using var clip = TinyClip();
        foreach (var p in clip.parameters()) p.requires_grad = false;
        var v0 = Tokens(2, Width, 30).requires_grad_(true);
        var v1 = Tokens(2, Width, 31).requires_grad_(true);
        var t1 = Tokens(2, Width, 32).requires_grad_(true);
        var provider = new ListProvider([null, t1], [v0, v1]);
        using var image = clip.EncodeImage(rand([2, 1, 8, 8]), provider);
        var ids = clip.Tokenize(["a photo of a cat."]);
        var text = clip.EncodeEmbeddings(clip.EmbedTokens(ids), ids, provider);
        image.ClassFeature.sum().Plus(text.sum()).backward();
        foreach (var t in new[] { v0, v1, t1 })
            Assert.That(t.grad is not null && t.grad.abs().sum().item<float>() > 0, Is.True);
        Assert.That(clip.parameters().All(p => p.grad is null), Is.True);
    }
}
