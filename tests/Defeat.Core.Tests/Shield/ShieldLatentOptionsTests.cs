using Defeat.Quantization;
using Defeat.Shield;
using Defeat.Tests.Fakes;
using Defeat.Tests.Quantization;
using static Defeat.Tests.Quantization.Reference;

namespace Defeat.Tests.Shield;

/// <summary>
/// The shield's options beyond the official network: normalised latents, a low-dimensional codebook, the
/// soft-VQ surrogate and the code-consistency loss, each against a hand computation.
/// </summary>
public class ShieldLatentOptionsTests
{
    private static PerturbShieldOptions Small => new() { FeatureDim = 6, GridHeight = 3, GridWidth = 3, HiddenDim = 4, CodebookSize = 10 };

    private static Tensor Map(Tensor grid) => grid.transpose(1, 2).reshape(grid.shape[0], 6, 3, 3);

    // The encoder output, channel-last and flattened to [B*N, H].
    private static Tensor EncoderRows(PerturbShield shield, Tensor grid) => shield.VqVae.Encode(Map(grid)).permute(0, 2, 3, 1).reshape(-1, 4);

    private static Dictionary<string, Tensor> Parameters(PerturbShield shield) =>
        shield.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach());

    [Test]
    public void L2LatentsWithACosineCodebookAreUnitVectorsSnappedToTheHighestCosine()
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        var shield = new PerturbShield((Small with { LatentNormalization = LatentNormalization.L2 })
            .WithQuantizer(q => q with { Distance = QuantizerDistance.Cosine, Seed = 3 }));
        var grid = randn(2, 9, 6);
        using var output = shield.Shield(grid);

        var ze = EncoderRows(shield, grid).detach();
        var expectedLatents = Rows(ze).Select(Unit).ToArray();
        var latents = Rows(output.Latents!.reshape(-1, 4));
        for (int m = 0; m < latents.Length; m++)
            Assert.That(latents[m], Is.EqualTo(expectedLatents[m]).Within(1e-6), $"latent {m}");
        var quantizer = (VectorQuantizer)shield.VqVae.Quantizer;
        var codes = Rows(quantizer.Codebook);
        var nearest = HighestCosine(Rows(ze), codes);
        Assert.That(Longs(output.Indices), Is.EqualTo(nearest));
        // The commitment term compares unit latents with unit codewords; the shield reports the quantizer's beta-weighted
        // term (beta = 0.25 by default), the codebook term unweighted.
        double commitment = 0;
        for (int m = 0; m < latents.Length; m++)
            commitment += SquaredDistance(expectedLatents[m], Unit(codes[nearest[m]]));
        commitment /= latents.Length * 4;
        Assert.That(output.CommitmentLoss.item<float>(), Is.EqualTo(0.25 * commitment).Within(1e-6));
        Assert.That(output.CodebookLoss.item<float>(), Is.EqualTo(commitment).Within(1e-6));
        Assert.That(shield.state_dict().Keys.Where(k => k.Contains("latent_norm") || k.Contains("quant_proj")), Is.Empty, "L2 adds no state");
    }

    [Test]
    public void LayerNormLatentsAreNormalisedPerVectorWithALearnedScaleAndShift()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var shield = new PerturbShield(Small with { LatentNormalization = LatentNormalization.LayerNorm });
        Assert.That(shield.state_dict().Keys, Does.Contain("vqvae.latent_norm.weight").And.Contain("vqvae.latent_norm.bias"));
        var p = shield.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        using (no_grad())
        {
            p["vqvae.latent_norm.weight"].copy_(tensor(new float[] { 0.5f, 2, -1, 1.5f }));
            p["vqvae.latent_norm.bias"].copy_(tensor(new float[] { 0.1f, 0, 0.3f, -0.2f }));
        }
        var grid = randn(2, 9, 6);
        using var output = shield.Shield(grid);

        var rows = Rows(EncoderRows(shield, grid));
        double[] w = [0.5, 2, -1, 1.5], b = [0.1, 0, 0.3, -0.2];
        var latents = Rows(output.Latents!.reshape(-1, 4));
        for (int m = 0; m < rows.Length; m++)
        {
            double mean = rows[m].Average();
            double variance = rows[m].Select(v => (v - mean) * (v - mean)).Average();
            var expected = rows[m].Select((v, i) => (v - mean) / Math.Sqrt(variance + 1e-5) * w[i] + b[i]).ToArray();
            Assert.That(latents[m], Is.EqualTo(expected).Within(1e-5), $"latent {m}");
        }
        output.Loss.Plus(output.Projected.Square().sum()).backward();
        Assert.That(p["vqvae.latent_norm.weight"].grad!.abs().sum().item<float>(), Is.GreaterThan(0f));
    }

    [Test]
    public void ALowDimensionalCodebookProjectsDownBeforeTheLookupAndUpAfterIt()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var codebook = randn(10, 2);
        var shield = new PerturbShield(Small with { CodeDim = 2 }, new NearestCodeQuantizer(codebook));
        Assert.That(shield.state_dict().Keys, Is.SupersetOf(new[] { "vqvae.quant_proj.weight", "vqvae.quant_proj.bias", "vqvae.post_quant_proj.weight", "vqvae.post_quant_proj.bias" }));
        var par = Parameters(shield);
        var grid = randn(2, 9, 6);
        using var output = shield.Shield(grid);

        // Down: l = W1 z + b1 in 2-D; nearest code there; up: W2 e + b2 feeds the decoder.
        var ze = EncoderRows(shield, grid).detach();
        var latents = ze.matmul(par["vqvae.quant_proj.weight"].t()).Plus(par["vqvae.quant_proj.bias"]);
        Assert.That((output.Latents!.reshape(-1, 2) - latents).abs().max().item<float>(), Is.LessThan(1e-5f));
        var nearest = NearestEuclidean(Rows(latents), Rows(codebook));
        Assert.That(Longs(output.Indices), Is.EqualTo(nearest));
        var codes = codebook.index_select(0, tensor(nearest));
        var up = codes.matmul(par["vqvae.post_quant_proj.weight"].t()).Plus(par["vqvae.post_quant_proj.bias"]);
        var decoded = shield.VqVae.Decode(up.reshape(2, 3, 3, 4).permute(0, 3, 1, 2)).reshape(2, 6, 9).transpose(1, 2);
        Assert.That((output.Reconstruction - decoded).abs().max().item<float>(), Is.LessThan(1e-5f));
        // Codebook and commitment terms live in the 2-D code space (the fake quantizer's beta is 3).
        var vq = (latents - codes).Square().mean().item<float>();
        Assert.That(output.CommitmentLoss.item<float>(), Is.EqualTo(3.0 * vq).Within(1e-5));
        Assert.That(output.CodebookLoss.item<float>(), Is.EqualTo(vq).Within(1e-6));

        // Built by the shield, the quantizer has the code width.
        Assert.That(new PerturbShield(Small with { CodeDim = 2 }).VqVae.Quantizer.Dim, Is.EqualTo(2));
    }

    [Test]
    public void TheLowDimensionalLookupIsStraightThroughBetweenTheTwoProjections()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var shield = new PerturbShield(Small with { CodeDim = 2 }, new NearestCodeQuantizer(randn(10, 2)));
        var par = Parameters(shield);
        var ze = randn(new long[] { 1, 4, 3, 3 }).requires_grad_(true);
        var g = randn(1, 4, 3, 3);
        using var q = shield.VqVae.Quantize(ze);
        Assert.That(q.Quantized.shape, Is.EqualTo(new long[] { 1, 4, 3, 3 }), "the decoder input, channel-first at width H");
        var grad = autograd.grad(new[] { (q.Quantized * g).sum() }, new[] { ze })[0];
        // d/dz (W2 ST(W1 z + b1) + b2) . g = W1^T W2^T g at every position.
        var expected = g.permute(0, 2, 3, 1).matmul(par["vqvae.post_quant_proj.weight"]).matmul(par["vqvae.quant_proj.weight"]).permute(0, 3, 1, 2);
        Assert.That((grad - expected).abs().max().item<float>(), Is.LessThan(1e-5f));
    }

    [Test]
    public void TheSoftSurrogateKeepsEveryForwardValueAndChangesOnlyTheGradient()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var shield = new PerturbShield(Small with { Quantizer = new VectorQuantizerOptions { CodebookSize = 10, Dim = 4, InitScale = 1.0, Seed = 1 } });
        shield.eval();
        var grid = randn(2, 9, 6).requires_grad_(true);
        using var plain = shield.Shield(grid);
        var plainGrad = autograd.grad(new[] { plain.Projected.sum() }, new[] { grid })[0];

        Assert.That(shield.VqVae.SoftQuantizationTemperature, Is.Null);
        using (shield.UseSoftQuantization(1.0))
        {
            Assert.That(shield.VqVae.SoftQuantizationTemperature, Is.EqualTo(1.0));
            using var soft = shield.Shield(grid);
            foreach (var (a, b, what) in new[] { (plain.Projected, soft.Projected, "projected"), (plain.Reconstruction, soft.Reconstruction, "reconstruction"),
                         (plain.Loss, soft.Loss, "loss"), (plain.Indices, soft.Indices, "indices") })
                Assert.That(a.equal(b).all().item<bool>(), Is.True, what);
            var softGrad = autograd.grad(new[] { soft.Projected.sum() }, new[] { grid })[0];
            Assert.That((softGrad - plainGrad).abs().max().item<float>(), Is.GreaterThan(1e-4f), "another gradient");

            // Scopes nest and restore.
            using (shield.UseSoftQuantization(3.0)) Assert.That(shield.VqVae.SoftQuantizationTemperature, Is.EqualTo(3.0));
            Assert.That(shield.VqVae.SoftQuantizationTemperature, Is.EqualTo(1.0));
        }
        Assert.That(shield.VqVae.SoftQuantizationTemperature, Is.Null);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => shield.UseSoftQuantization(double.NaN));
        Assert.That(e!.ParamName, Is.EqualTo("temperature"));
    }

    [Test]
    public void TheSoftSurrogateGradientOfTheBottleneckIsTheHandComputedOne()
    {
        using var scope = NewDisposeScope();
        var quantizer = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 10, Dim = 4, InitScale = 1.0, Seed = 2 });
        quantizer.to(ScalarType.Float64);
        var vae = new GridVqVae(6, 4, quantizer);
        vae.to(ScalarType.Float64);
        vae.eval();
        var ze = randn(new long[] { 1, 4, 2, 2 }, dtype: ScalarType.Float64, generator: new Generator(3)).requires_grad_(true);
        var g = randn(new long[] { 1, 4, 2, 2 }, dtype: ScalarType.Float64, generator: new Generator(4));
        Tensor grad;
        using (vae.UseSoftQuantization(0.7))
        {
            using var q = vae.Quantize(ze);
            grad = autograd.grad(new[] { (q.Quantized * g).sum() }, new[] { ze })[0];
        }
        var zs = Rows(ze.permute(0, 2, 3, 1).reshape(-1, 4));
        var gs = Rows(g.permute(0, 2, 3, 1).reshape(-1, 4));
        var got = Rows(grad.permute(0, 2, 3, 1).reshape(-1, 4));
        var codes = Rows(quantizer.Codebook);
        for (int m = 0; m < 4; m++)
            Assert.That(got[m], Is.EqualTo(SoftQuantizerSurrogateTests.SurrogateGradient(zs[m], codes, gs[m], 0.7)).Within(1e-10), $"position {m}");
    }

    [Test]
    public void CodeConsistencyPullsAdversarialLatentsToTheCleanCodewords()
    {
        using var scope = NewDisposeScope();
        manual_seed(6);
        var codebook = randn(10, 4);
        var shield = new PerturbShield(Small, new NearestCodeQuantizer(codebook));
        var clean = randn(2, 9, 6);
        var adversarial = randn(2, 9, 6).Times(2).requires_grad_(true);
        var cleanLeaf = clean.clone().requires_grad_(true);
        using var output = shield.Shield(adversarial);
        var loss = shield.CodeConsistencyLoss(output, cleanLeaf);

        // By hand: the clean image's nearest codes, then mean((z_adv - e_k)^2) over positions and channels.
        var cleanRows = EncoderRows(shield, clean).detach();
        var k = tensor(NearestEuclidean(Rows(cleanRows), Rows(codebook)));
        var advRows = EncoderRows(shield, adversarial);
        var expected = (advRows - codebook.index_select(0, k)).Square().mean();
        Assert.That(loss.item<float>(), Is.EqualTo(expected.item<float>()).Within(1e-5));
        // The adversarial codes differ somewhere, else the test would not tell the clean codes from its own.
        Assert.That(output.Indices.reshape(-1).equal(k).all().item<bool>(), Is.False);

        var got = autograd.grad(new[] { loss }, new[] { adversarial }, retain_graph: true)[0];
        var want = autograd.grad(new[] { expected }, new[] { adversarial })[0];
        Assert.That((got - want).abs().max().item<float>(), Is.LessThan(1e-5f));
        loss.backward();
        Assert.That(cleanLeaf.grad, Is.Null, "no gradient reaches the clean images");
    }

    [Test]
    public void CodeConsistencyComparesUnitVectorsInCosineModeAndNeverTouchesTheCodebook()
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        var shield = new PerturbShield(Small.WithQuantizer(q => q with
        {
            Distance = QuantizerDistance.Cosine, CodebookUpdate = CodebookUpdate.ExponentialMovingAverage, DeadCodeThreshold = 5, Seed = 2,
        }));
        var clean = randn(2, 9, 6);
        var adversarial = clean.Plus(randn(2, 9, 6).Times(0.5));
        shield.eval();
        using var output = shield.Shield(adversarial);
        shield.train();
        var before = shield.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var loss = shield.CodeConsistencyLoss(output, clean);
        foreach (var (key, value) in shield.state_dict())
            Assert.That(value.equal(before[key]).all().item<bool>(), Is.True, $"{key} unchanged in training mode");

        var codes = Rows(((VectorQuantizer)shield.VqVae.Quantizer).Codebook).Select(Unit).ToArray();
        var k = HighestCosine(Rows(EncoderRows(shield, clean)), codes);
        var adv = Rows(EncoderRows(shield, adversarial)).Select(Unit).ToArray();
        double expected = adv.Select((z, m) => SquaredDistance(z, codes[k[m]])).Sum() / (adv.Length * 4);
        Assert.That(loss.item<float>(), Is.EqualTo(expected).Within(1e-5));
    }

    [Test]
    public void BadOptionsAndArgumentsGiveClearErrors()
    {
        using var scope = NewDisposeScope();
        var e1 = Assert.Throws<ArgumentOutOfRangeException>(() => new PerturbShield(Small with { CodeDim = 0 }));
        Assert.That(e1!.ParamName, Is.EqualTo("CodeDim"));
        var e2 = Assert.Throws<ArgumentOutOfRangeException>(() => new PerturbShield(Small with { LatentNormalization = (LatentNormalization)5 }));
        Assert.That(e2!.ParamName, Is.EqualTo("LatentNormalization"));
        var e3 = Assert.Throws<ArgumentOutOfRangeException>(() => new PerturbShield(Small with { CodeDim = 2, Quantizer = new VectorQuantizerOptions { CodebookSize = 10, Dim = 4 } }));
        Assert.That(e3!.Message, Does.Contain("Dim = 2").And.Contain("CodeDim").And.Contain("got CodebookSize = 10, Dim = 4"));
        var e4 = Assert.Throws<ArgumentException>(() => new PerturbShield(Small with { CodeDim = 3 }, new NearestCodeQuantizer(randn(10, 4))));
        Assert.That(e4!.Message, Does.Contain("codeDim = 3").And.Contain("got 4"));

        // WithQuantizer sizes the quantizer to the shield (code width when set) and keeps what was chosen before.
        var options = (Small with { CodeDim = 3 }).WithQuantizer(q => q with { KMeansInit = true }).WithQuantizer(q => q with { Seed = 9 });
        Assert.That((options.Quantizer!.CodebookSize, options.Quantizer.Dim, options.Quantizer.KMeansInit, options.Quantizer.Seed), Is.EqualTo((10, 3, true, 9L)));
        Assert.That(options.QuantizerDim, Is.EqualTo(3));

        var shield = new PerturbShield(Small);
        using var output = shield.Shield(randn(2, 9, 6));
        var e5 = Assert.Throws<ArgumentException>(() => shield.CodeConsistencyLoss(output, randn(3, 9, 6)));
        Assert.That(e5!.ParamName, Is.EqualTo("cleanGridFeatures"));
        Assert.That(e5.Message, Does.Contain("[3, 9, 6]"));
        var e6 = Assert.Throws<ArgumentException>(() => shield.CodeConsistencyLoss(output with { Latents = null }, randn(2, 9, 6)));
        Assert.That(e6!.ParamName, Is.EqualTo("adversarial"));
    }
}
