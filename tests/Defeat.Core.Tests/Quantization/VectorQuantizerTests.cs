using Defeat.Quantization;
using static Defeat.Tests.Quantization.Reference;

namespace Defeat.Tests.Quantization;

/// <summary>Nearest-code search, straight-through gradients, losses and shapes of <see cref="VectorQuantizer"/>.</summary>
public class VectorQuantizerTests
{
    private static Tensor RandomInput(long[] shape, long seed, ScalarType dtype = ScalarType.Float32)
        => randn(shape, dtype: dtype, generator: new Generator((ulong)seed));

    // Codes spread over the data's range so that many are chosen.
    private static VectorQuantizer Quantizer(int k, int d, ulong seed = 1, VectorQuantizerOptions? options = null)
        => new((options ?? new VectorQuantizerOptions()) with { CodebookSize = k, Dim = d, InitScale = 1.5, Seed = seed });

    [Test]
    public void IndicesEqualBruteForceArgminInFloat64()
    {
        using var scope = NewDisposeScope();
        using var vq = Quantizer(13, 5);
        vq.to(ScalarType.Float64);
        var z = RandomInput([37, 5], 2, ScalarType.Float64);
        using var output = vq.Quantize(z);
        Assert.That(Longs(output.Indices), Is.EqualTo(NearestEuclidean(Rows(z), Rows(vq.Codebook))));
        Assert.That(output.Indices.dtype, Is.EqualTo(ScalarType.Int64));
        Assert.That(output.Quantized.dtype, Is.EqualTo(ScalarType.Float64));
    }

    [Test]
    public void IndicesInFloat32PickACodeAsNearAsTheBruteForceOne()
    {
        using var scope = NewDisposeScope();
        using var vq = Quantizer(29, 7);
        var z = RandomInput([64, 7], 3);
        using var output = vq.Quantize(z);
        var rows = Rows(z);
        var codes = Rows(vq.Codebook);
        var expected = NearestEuclidean(rows, codes);
        var got = Longs(output.Indices);
        for (int i = 0; i < rows.Length; i++)
            Assert.That(SquaredDistance(rows[i], codes[got[i]]),
                Is.EqualTo(SquaredDistance(rows[i], codes[expected[i]])).Within(1e-5), $"row {i}");
        // With random data exact ties are all but impossible: the choices agree.
        Assert.That(got.Zip(expected).Count(p => p.First != p.Second), Is.LessThanOrEqualTo(1));
    }

    [Test]
    public void ChunkedSearchEqualsUnchunked()
    {
        using var scope = NewDisposeScope();
        using var whole = Quantizer(11, 6, seed: 5);
        using var chunked = Quantizer(11, 6, seed: 5, new VectorQuantizerOptions { ChunkSize = 3 });
        using var byBytes = Quantizer(11, 6, seed: 5, new VectorQuantizerOptions { MaxDistanceBytes = 11 * 4 * 2 });
        Assert.That(chunked.ChunkRows(ScalarType.Float32), Is.EqualTo(3));
        Assert.That(byBytes.ChunkRows(ScalarType.Float32), Is.EqualTo(2));
        var z = RandomInput([50, 6], 4);
        using var a = whole.Quantize(z);
        using var b = chunked.Quantize(z);
        using var c = byBytes.Quantize(z);
        Assert.That(Longs(b.Indices), Is.EqualTo(Longs(a.Indices)));
        Assert.That(Longs(c.Indices), Is.EqualTo(Longs(a.Indices)));
        Assert.That(Doubles(b.Quantized), Is.EqualTo(Doubles(a.Quantized)));
        Assert.That(Longs(a.Indices).Distinct().Count(), Is.GreaterThan(3), "the test needs several codes in use");
    }

    [Test]
    public void QuantizedIsExactlyTheChosenCodewordAndLookupAgrees()
    {
        using var scope = NewDisposeScope();
        using var vq = Quantizer(9, 4);
        var z = RandomInput([20, 4], 6).requires_grad_(true);
        using var output = vq.Quantize(z);
        var codes = Rows(vq.Codebook);
        var expected = Longs(output.Indices).SelectMany(k => codes[k]).ToArray();
        Assert.That(Doubles(output.Quantized), Is.EqualTo(expected)); // bit-exact, not z + (e - z)
        Assert.That(Doubles(vq.Lookup(output.Indices)), Is.EqualTo(expected));
        var lookup = vq.Lookup(output.Indices.reshape(4, 5));
        Assert.That(lookup.shape, Is.EqualTo(new long[] { 4, 5, 4 }));
    }

    [Test]
    public void StraightThroughPassesTheOutputGradientToTheInputUnchanged()
    {
        using var scope = NewDisposeScope();
        using var vq = Quantizer(9, 4);
        var z = RandomInput([20, 4], 7).requires_grad_(true);
        var g = RandomInput([20, 4], 8);
        using var output = vq.Quantize(z);
        output.Quantized.backward([g]);
        Assert.That(Doubles(z.grad!), Is.EqualTo(Doubles(g)));
        // The codebook learns only from the codebook loss, never through the decoder path.
        var codebookGrad = vq.Codebook.grad;
        Assert.That(codebookGrad is null || codebookGrad.abs().max().item<float>() == 0, Is.True);
    }

    [Test]
    public void CodebookGradientIsTheAnalyticOne()
    {
        using var scope = NewDisposeScope();
        using var vq = Quantizer(6, 3);
        vq.to(ScalarType.Float64);
        var z = RandomInput([15, 3], 9, ScalarType.Float64).requires_grad_(true);
        using var output = vq.Quantize(z);
        output.CodebookLoss.backward();

        // d/de_k mean((sg z - e)^2) = -2/(M D) * sum over inputs assigned to k of (z - e_k).
        var rows = Rows(z);
        var codes = Rows(vq.Codebook);
        var indices = Longs(output.Indices);
        var expected = new double[6 * 3];
        for (int i = 0; i < rows.Length; i++)
            for (int j = 0; j < 3; j++)
                expected[indices[i] * 3 + j] += -2.0 / (15 * 3) * (rows[i][j] - codes[indices[i]][j]);
        Assert.That(Doubles(vq.Codebook.grad!), Is.EqualTo(expected).Within(1e-12));
        // sg[z]: no gradient reaches the input from the codebook loss.
        Assert.That(z.grad is null || z.grad.abs().max().item<double>() == 0, Is.True);
    }

    [Test]
    public void CommitmentGradientIsTheAnalyticOneAndSkipsTheCodebook()
    {
        using var scope = NewDisposeScope();
        using var vq = Quantizer(6, 3, options: new VectorQuantizerOptions { CommitmentWeight = 0.4 });
        vq.to(ScalarType.Float64);
        var z = RandomInput([15, 3], 10, ScalarType.Float64).requires_grad_(true);
        using var output = vq.Quantize(z);
        output.CommitmentLoss.backward();
        // d/dz beta * mean((z - sg e)^2) = 2 beta / (M D) * (z - e).
        var rows = Rows(z);
        var codes = Rows(vq.Codebook);
        var indices = Longs(output.Indices);
        var expected = rows.SelectMany((r, i) => r.Select((v, j) => 2 * 0.4 / (15 * 3) * (v - codes[indices[i]][j]))).ToArray();
        Assert.That(Doubles(z.grad!), Is.EqualTo(expected).Within(1e-12));
        Assert.That(vq.Codebook.grad is null || vq.Codebook.grad.abs().max().item<double>() == 0, Is.True);
    }

    [TestCase(true)]
    [TestCase(false)]
    public void LossesUsageAndPerplexityEqualTheFormulas(bool withGrad)
    {
        using var scope = NewDisposeScope();
        using var vq = Quantizer(7, 4);
        vq.to(ScalarType.Float64);
        var z = RandomInput([2, 9, 4], 11, ScalarType.Float64);
        using var noGrad = withGrad ? null : no_grad();
        using var output = vq.Quantize(z);

        var rows = Rows(z.reshape(-1, 4));
        var codes = Rows(vq.Codebook);
        var indices = NearestEuclidean(rows, codes);
        double mse = rows.Select((r, i) => SquaredDistance(r, codes[indices[i]])).Sum() / (18 * 4);
        Assert.That(output.CodebookLoss.item<double>(), Is.EqualTo(mse).Within(1e-12));
        Assert.That(output.CommitmentLoss.item<double>(), Is.EqualTo(0.25 * mse).Within(1e-12));

        var counts = Enumerable.Range(0, 7).Select(k => (long)indices.Count(i => i == k)).ToArray();
        Assert.That(Longs(output.UsageCounts), Is.EqualTo(counts));
        double entropy = -counts.Where(c => c > 0).Select(c => c / 18.0).Sum(p => p * Math.Log(p));
        Assert.That(output.Perplexity.item<double>(), Is.EqualTo(Math.Exp(entropy)).Within(1e-9));
        Assert.That(CodebookUsage.CodesUsed(output.UsageCounts), Is.EqualTo(counts.Count(c => c > 0)));
    }

    [Test]
    public void CosineModePicksTheCodeOfHighestCosineAndOutputsUnitCodes()
    {
        using var scope = NewDisposeScope();
        using var vq = new VectorQuantizer(new VectorQuantizerOptions
        { CodebookSize = 10, Dim = 5, Distance = QuantizerDistance.Cosine, Seed = 3 });
        vq.to(ScalarType.Float64);
        // Scale rows very differently: cosine must ignore the scale.
        var z = RandomInput([30, 5], 12, ScalarType.Float64) * linspace(0.01, 100, 30, dtype: ScalarType.Float64).unsqueeze(1);
        using var output = vq.Quantize(z);
        var expected = HighestCosine(Rows(z), Rows(vq.Codebook));
        Assert.That(Longs(output.Indices), Is.EqualTo(expected));
        var quantized = Rows(output.Quantized);
        for (int i = 0; i < quantized.Length; i++)
            Assert.That(quantized[i], Is.EqualTo(Unit(Rows(vq.Codebook)[expected[i]])).Within(1e-12));
        // Losses compare unit vectors.
        double mse = Rows(z).Select((r, i) => SquaredDistance(Unit(r), quantized[i])).Sum() / (30 * 5);
        Assert.That(output.CodebookLoss.item<double>(), Is.EqualTo(mse).Within(1e-12));
    }

    [Test]
    public void EmptyBatchGivesEmptyOutputsAndZeroLosses()
    {
        using var scope = NewDisposeScope();
        using var vq = Quantizer(5, 3);
        vq.train();
        var z = zeros(2, 0, 3).requires_grad_(true);
        using var output = vq.Quantize(z);
        Assert.That(output.Quantized.shape, Is.EqualTo(new long[] { 2, 0, 3 }));
        Assert.That(output.Indices.shape, Is.EqualTo(new long[] { 2, 0 }));
        Assert.That(output.CodebookLoss.item<float>(), Is.EqualTo(0f));
        Assert.That(output.CommitmentLoss.item<float>(), Is.EqualTo(0f));
        Assert.That(Longs(output.UsageCounts), Is.EqualTo(new long[5]));
        Assert.That(output.Perplexity.item<float>(), Is.EqualTo(1f));
        Assert.That(vq.Lookup(zeros(0, dtype: ScalarType.Int64)).shape, Is.EqualTo(new long[] { 0, 3 }));
    }

    [Test]
    public void LeadingDimensionsAreKeptAndEachVectorIsQuantizedOnItsOwn()
    {
        using var scope = NewDisposeScope();
        using var vq = Quantizer(8, 6);
        vq.to(ScalarType.Float64);
        var z = RandomInput([2, 3, 4, 6], 13, ScalarType.Float64);
        using var output = vq.Quantize(z);
        Assert.That(output.Indices.shape, Is.EqualTo(new long[] { 2, 3, 4 }));
        Assert.That(output.Quantized.shape, Is.EqualTo(new long[] { 2, 3, 4, 6 }));
        Assert.That(Longs(output.Indices), Is.EqualTo(NearestEuclidean(Rows(z.reshape(-1, 6)), Rows(vq.Codebook))));
    }

    [Test]
    public void ChannelFirstFeatureMapsAreQuantizedAfterPermutingToChannelLast()
    {
        using var scope = NewDisposeScope();
        using var vq = Quantizer(8, 6);
        vq.to(ScalarType.Float64);
        var x = RandomInput([2, 6, 3, 5], 14, ScalarType.Float64); // [B, D, H, W]
        using var output = vq.Quantize(x.permute(0, 2, 3, 1));
        Assert.That(output.Indices.shape, Is.EqualTo(new long[] { 2, 3, 5 }));
        var back = output.Quantized.permute(0, 3, 1, 2);
        Assert.That(back.shape, Is.EqualTo(x.shape));
        var codes = Rows(vq.Codebook);
        for (int b = 0; b < 2; b++)
            for (int h = 0; h < 3; h++)
                for (int w = 0; w < 5; w++)
                {
                    var pixel = Doubles(x[b, .., h, w]);
                    long expected = NearestEuclidean([pixel], codes)[0];
                    Assert.That(output.Indices[b, h, w].item<long>(), Is.EqualTo(expected));
                    Assert.That(Doubles(back[b, .., h, w]), Is.EqualTo(codes[expected]));
                }
    }

    [Test]
    public void DefaultCodebookIsTheOfficialUniformInitialisationUnderTheEmbeddingKey()
    {
        using var scope = NewDisposeScope();
        using var vq = new VectorQuantizer();
        Assert.That(vq.Codebook.shape, Is.EqualTo(new long[] { 512, 256 }));
        var values = Doubles(vq.Codebook);
        Assert.That(values.Max(), Is.LessThanOrEqualTo(1.0 / 512).And.GreaterThan(0.99 / 512));
        Assert.That(values.Min(), Is.GreaterThanOrEqualTo(-1.0 / 512).And.LessThan(-0.99 / 512));
        // The variance of U(-a, a) is a^2 / 3.
        double mean = values.Average();
        double variance = values.Average(v => (v - mean) * (v - mean));
        Assert.That(variance, Is.EqualTo(1.0 / 3 / 512 / 512).Within(0.02 / 512 / 512));
        Assert.That(vq.state_dict().Keys, Is.EquivalentTo(new[] { "weight" }));
        Assert.That(vq.parameters().Count(), Is.EqualTo(1));
    }

    [Test]
    public void AParentFieldNamedLikeTheOfficialOneGivesTheOfficialKey()
    {
        using var scope = NewDisposeScope();
        using var parent = new Parent();
        Assert.That(parent.state_dict().Keys, Is.EquivalentTo(new[] { "vq_embedding.weight" }));
        var official = new Dictionary<string, Tensor> { ["vq_embedding.weight"] = ones(4, 3) };
        parent.load_state_dict(official);
        Assert.That(Doubles(parent.vq_embedding.Codebook), Is.All.EqualTo(1.0));
    }

    [Test]
    public void SameSeedGivesTheSameCodebookAndOutputs()
    {
        using var scope = NewDisposeScope();
        var options = new VectorQuantizerOptions { CodebookSize = 16, Dim = 4, Seed = 42 };
        using var a = new VectorQuantizer(options);
        using var b = new VectorQuantizer(options);
        using var c = new VectorQuantizer(options with { Seed = 43 });
        Assert.That(Doubles(b.Codebook), Is.EqualTo(Doubles(a.Codebook)));
        Assert.That(Doubles(c.Codebook), Is.Not.EqualTo(Doubles(a.Codebook)));
        var z = RandomInput([40, 4], 15);
        using var oa = a.Quantize(z);
        using var ob = b.Quantize(z);
        Assert.That(Longs(ob.Indices), Is.EqualTo(Longs(oa.Indices)));
    }

    [Test]
    public void RepeatedCallsKeepNativeTensorCountFlat()
    {
        using var vq = Quantizer(16, 8);
        vq.train();
        using var z = RandomInput([32, 8], 16);
        void Step()
        {
            using var scope = NewDisposeScope();
            using var output = vq.Quantize(z.requires_grad_(true));
            output.CodebookLoss.Plus(output.CommitmentLoss).Plus(output.Quantized.sum()).backward();
        }
        Step();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 5; i++) Step();
        Assert.That(DisposeScopeManager.Statistics.ThreadTotalLiveCount, Is.LessThanOrEqualTo(before));
    }

    private sealed class Parent : nn.Module
    {
        // Named as the official VQVAE_NET field, so the key is vq_embedding.weight.
#pragma warning disable IDE1006
        public readonly VectorQuantizer vq_embedding = new(new VectorQuantizerOptions { CodebookSize = 4, Dim = 3 });
#pragma warning restore IDE1006

        public Parent() : base(nameof(Parent)) => RegisterComponents();
    }
}
