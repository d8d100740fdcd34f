using Defeat.Clip;
using Defeat.Clip.Loading;
using Defeat.Clip.Modeling;

namespace Defeat.Tests.Clip;

/// <summary>
/// The fast paths of the CLIP modules (fused attention with the causal mask as a kernel flag, QuickGELU's slope carried by
/// the MLP's GEMMs, in-place work when nothing is recorded, the patch embedding as a matmul) against the literal
/// formulas written out here, in float64: values and input gradients.
/// </summary>
public class FusedKernelTests
{
    private static void RandomizeParameters(nn.Module module, int seed)
    {
        using var noGrad = no_grad();
        var generator = new Generator((ulong)seed);
        foreach (var (_, p) in module.named_parameters())
            p.copy_(randn(p.shape, dtype: p.dtype, generator: generator).Times(0.3));
    }

    private static Dictionary<string, Tensor> Parameters(nn.Module module) =>
        module.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);

    // softmax(q k^T / sqrt(d) + mask) v over heads, then out_proj: the textbook formula.
    private static Tensor LiteralAttention(Tensor x, Dictionary<string, Tensor> p, string prefix, int heads, bool causal)
    {
        long b = x.shape[0], l = x.shape[1], w = x.shape[2], d = w / heads;
        var qkv = x.matmul(p[prefix + "in_proj_weight"].t()).Plus(p[prefix + "in_proj_bias"]);
        Tensor Head(int i) => qkv[.., .., (int)(i * w)..(int)((i + 1) * w)].reshape(b, l, heads, d).permute(0, 2, 1, 3);
        var scores = Head(0).matmul(Head(1).transpose(-1, -2)).Over(Math.Sqrt(d));
        if (causal)
            scores = scores.Plus(ScalarOps.Full([l, l], double.NegativeInfinity, dtype: x.dtype).triu(1));
        var merged = scores.softmax(-1).matmul(Head(2)).permute(0, 2, 1, 3).reshape(b, l, w);
        return merged.matmul(p[prefix + "out_proj.weight"].t()).Plus(p[prefix + "out_proj.bias"]);
    }

    private static Tensor LiteralBlock(Tensor x, Dictionary<string, Tensor> p, int heads, bool causal)
    {
        long w = x.shape[2];
        Tensor Norm(Tensor t, string name) => nn.functional.layer_norm(t, [w], p[name + ".weight"], p[name + ".bias"]);
        x = x.Plus(LiteralAttention(Norm(x, "ln_1"), p, "attn.", heads, causal));
        var h = Norm(x, "ln_2").matmul(p["mlp.c_fc.weight"].t()).Plus(p["mlp.c_fc.bias"]);
        return x.Plus((h * sigmoid(h.Times(1.702))).matmul(p["mlp.c_proj.weight"].t())).Plus(p["mlp.c_proj.bias"]);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void AttentionEqualsTheLiteralFormulaWithItsGradient(bool causal)
    {
        using var scope = NewDisposeScope();
        using var attention = new MultiheadSelfAttention(12, 3, causal);
        attention.to(ScalarType.Float64);
        RandomizeParameters(attention, seed: 1);
        var x = randn(new long[] { 2, 7, 12 }, dtype: ScalarType.Float64, generator: new Generator(2)).requires_grad_(true);
        var g = randn(new long[] { 2, 7, 12 }, dtype: ScalarType.Float64, generator: new Generator(3));

        var actual = attention.call(x);
        var actualGrad = autograd.grad(new[] { actual }, new[] { x }, new[] { g })[0];
        var expected = LiteralAttention(x, Parameters(attention), "", 3, causal);
        var expectedGrad = autograd.grad(new[] { expected }, new[] { x }, new[] { g })[0];

        Fixture.AssertClose(actual, expected, 1e-12, "attention output");
        Fixture.AssertClose(actualGrad, expectedGrad, 1e-12, "attention input gradient");
        if (causal)
        {
            // Position 0 sees only itself: changing later tokens must not move it.
            using var noGrad = no_grad();
            var changed = x.clone();
            using var s = 1.0.ToScalar();
            using var alpha = 1.ToScalar();
            changed[.., 1..].add_(s, alpha);
            Fixture.AssertClose(attention.call(changed)[.., 0], actual[.., 0], 1e-12, "causal first position");
        }
    }

    [TestCase(false)]
    [TestCase(true)]
    public void BlockEqualsTheLiteralFormulaRecordingOrNot(bool causal)
    {
        using var scope = NewDisposeScope();
        using var block = new ResidualAttentionBlock(12, 3, causal);
        block.to(ScalarType.Float64);
        RandomizeParameters(block, seed: 4);
        var x = randn(new long[] { 3, 5, 12 }, dtype: ScalarType.Float64, generator: new Generator(5)).requires_grad_(true);
        var g = randn(new long[] { 3, 5, 12 }, dtype: ScalarType.Float64, generator: new Generator(6));
        var p = Parameters(block);

        var actual = block.call(x);
        var actualGrad = autograd.grad(new[] { actual }, new[] { x }, new[] { g })[0];
        var expected = LiteralBlock(x, p, 3, causal);
        var expectedGrad = autograd.grad(new[] { expected }, new[] { x }, new[] { g })[0];
        Tensor inPlace;
        using (no_grad()) inPlace = block.call(x);

        // The MLP's GEMMs take the slope 1.702 as a float (1.70200002...): about 1e-8 relative in float64.
        Fixture.AssertClose(actual, expected, 1e-7, "block output (recording)");
        Fixture.AssertClose(actualGrad, expectedGrad, 1e-7, "block input gradient");
        Fixture.AssertClose(inPlace, expected, 1e-7, "block output (no_grad, in place)");
        Assert.That(x.grad, Is.Null, "the input's .grad is untouched");
    }

    [Test]
    public void QuickGeluIsTheLiteralProductWithItsGradient()
    {
        using var scope = NewDisposeScope();
        using var gelu = new QuickGelu();
        var x = randn(new long[] { 1000 }, dtype: ScalarType.Float64, generator: new Generator(7)).Times(4).requires_grad_(true);
        var actual = gelu.call(x);
        var expected = x * sigmoid(x.Times(1.702));
        Fixture.AssertClose(actual, expected, 1e-14, "QuickGELU");
        Fixture.AssertClose(autograd.grad(new[] { actual.sum() }, new[] { x })[0], autograd.grad(new[] { expected.sum() }, new[] { x })[0], 1e-14, "QuickGELU gradient");
    }

    [Test]
    public void PatchEmbeddingEqualsTheStridedConvolution()
    {
        // The image tower embeds patches with a matmul; the reference does it with conv1 (stride = kernel).
        using var scope = NewDisposeScope();
        using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        model.to(ScalarType.Float64);
        var p = Parameters(model.Visual);
        var images = Fixture.Reference["images"].to(ScalarType.Float64);
        var normalized = model.named_children().First(c => c.name == "normalize").module is nn.Module<Tensor, Tensor> n ? n.call(images) : throw new InvalidOperationException("no normalize");
        var x = normalized.clone().requires_grad_(true);

        var actual = model.Visual.call(x);
        var conv = nn.functional.conv2d(x, p["conv1.weight"], strides: [model.Config.VisionPatchSize, model.Config.VisionPatchSize]);
        var tokens = cat([p["class_embedding"].expand(x.shape[0], 1, -1), conv.flatten(2).transpose(1, 2)], 1).Plus(p["positional_embedding"]);
        var named = model.Visual.named_modules().ToDictionary(m => m.name, m => m.module);
        tokens = ((nn.Module<Tensor, Tensor>)named["ln_pre"]).call(tokens);
        tokens = ((nn.Module<Tensor, Tensor>)named["transformer"]).call(tokens);
        var expected = ((nn.Module<Tensor, Tensor>)named["ln_post"]).call(tokens).matmul(p["proj"]);
        var g = randn_like(expected);

        Fixture.AssertClose(actual, expected, 1e-12, "image tower output");
        Fixture.AssertClose(autograd.grad(new[] { actual }, new[] { x }, new[] { g })[0],
            autograd.grad(new[] { expected }, new[] { x }, new[] { g })[0], 1e-12, "image tower input gradient");
    }

    [Test]
    public void FeaturesAreTheSameWithAndWithoutAutograd()
    {
        // Without a graph the blocks work in place; with one they must not: both give the same features.
        using var scope = NewDisposeScope();
        using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        var images = Fixture.Reference["images"];
        var ids = Fixture.Reference["token_ids"];
        using var recorded = model.EncodeImage(images.clone().requires_grad_(true));
        var recordedText = model.EncodeText(ids);
        Assert.That(recordedText.requires_grad, Is.True, "parameters require grad: the text pass was recorded");
        using var noGrad = no_grad();
        using var plain = model.EncodeImage(images);
        Assert.That(Fixture.Same(plain.ClassFeature, recorded.ClassFeature.detach()), Is.True, "class features");
        Assert.That(Fixture.Same(plain.GridFeatures, recorded.GridFeatures.detach()), Is.True, "grid features");
        Assert.That(Fixture.Same(model.EncodeText(ids), recordedText.detach()), Is.True, "text features");
    }
}
