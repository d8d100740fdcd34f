using Defeat.Quantization;
using static Defeat.Tests.Quantization.Reference;

namespace Defeat.Tests.Quantization;

/// <summary>The first-batch initialisations that put the codebook at the encoder's scale.</summary>
public class FirstBatchInitTests
{
    private static VectorQuantizer Make(FirstBatchInit init, int k = 6, int d = 3, VectorQuantizerOptions? options = null)
    {
        var vq = new VectorQuantizer((options ?? new VectorQuantizerOptions()) with { CodebookSize = k, Dim = d, Seed = 3, FirstBatchInit = init });
        vq.to(ScalarType.Float64);
        return vq;
    }

    private static double MeanNorm(double[][] rows) => rows.Average(r => Math.Sqrt(r.Sum(v => v * v)));

    [Test]
    public void MatchInputNormRescalesTheUniformCodebookToTheMeanInputNormOnce()
    {
        using var scope = NewDisposeScope();
        using var vq = Make(FirstBatchInit.MatchInputNorm);
        var initial = Rows(vq.Codebook);
        // The official init is tiny: U(-1/K, 1/K).
        Assert.That(initial.SelectMany(r => r).Max(Math.Abs), Is.LessThanOrEqualTo(1.0 / 6));
        var z = randn(new long[] { 10, 3 }, dtype: ScalarType.Float64, generator: new Generator(1)).Times(7);

        vq.train();
        using (var _ = vq.Quantize(z)) { }

        double factor = MeanNorm(Rows(z)) / MeanNorm(initial);
        var expected = initial.Select(r => r.Select(v => v * factor).ToArray()).ToArray();
        var codebook = Rows(vq.Codebook);
        for (int k = 0; k < 6; k++)
            Assert.That(codebook[k], Is.EqualTo(expected[k]).Within(1e-12), $"code {k}");
        Assert.That(MeanNorm(codebook), Is.EqualTo(MeanNorm(Rows(z))).Within(1e-10));
        Assert.That(vq.state_dict()["initialized"].item<double>(), Is.EqualTo(1.0));

        // Once only: a second training batch leaves the scale alone (the gradient-mode codebook changes only by the optimiser).
        var afterFirst = vq.Codebook.detach().clone();
        using (var _ = vq.Quantize(z.Times(100))) { }
        Assert.That(vq.Codebook.equal(afterFirst).all().item<bool>(), Is.True);
    }

    [Test]
    public void EvaluationModeNeverInitialises()
    {
        using var scope = NewDisposeScope();
        using var vq = Make(FirstBatchInit.SampleInputs);
        var before = vq.Codebook.clone();
        vq.eval();
        using (var _ = vq.Quantize(randn(new long[] { 10, 3 }, dtype: ScalarType.Float64))) { }
        Assert.That(vq.Codebook.equal(before).all().item<bool>(), Is.True);
        Assert.That(vq.state_dict()["initialized"].item<double>(), Is.EqualTo(0.0));
    }

    [Test]
    public void SampleInputsTakesDistinctInputRowsWhenTheBatchIsLargeEnough()
    {
        using var scope = NewDisposeScope();
        using var vq = Make(FirstBatchInit.SampleInputs);
        var z = randn(new long[] { 9, 3 }, dtype: ScalarType.Float64, generator: new Generator(2));
        vq.train();
        using (var _ = vq.Quantize(z)) { }
        var rows = Rows(z);
        var picked = Rows(vq.Codebook).Select(code => Array.FindIndex(rows, r => r.SequenceEqual(code))).ToArray();
        Assert.That(picked, Has.All.GreaterThanOrEqualTo(0), "every codeword is an input row");
        Assert.That(picked.Distinct().Count(), Is.EqualTo(6), "distinct rows");
    }

    [Test]
    public void SampleInputsDrawsWithReplacementFromASmallBatchAndUsesUnitRowsInCosineMode()
    {
        using var scope = NewDisposeScope();
        using var vq = Make(FirstBatchInit.SampleInputs, options: new VectorQuantizerOptions { Distance = QuantizerDistance.Cosine });
        var z = randn(new long[] { 2, 3 }, dtype: ScalarType.Float64, generator: new Generator(4)).Times(5);
        vq.train();
        using (var _ = vq.Quantize(z)) { }
        var units = Rows(z).Select(Unit).ToArray();
        foreach (var code in Rows(vq.Codebook))
            Assert.That(units.Any(u => u.Zip(code, (a, b) => Math.Abs(a - b)).Max() < 1e-12), Is.True, "each codeword is a unit input");
    }

    [Test]
    public void WithTheEmaCodebookTheAveragesStartAtTheNewCodes()
    {
        using var scope = NewDisposeScope();
        using var vq = Make(FirstBatchInit.MatchInputNorm, options: new VectorQuantizerOptions { CodebookUpdate = CodebookUpdate.ExponentialMovingAverage, Decay = 0.5 });
        var initial = vq.Codebook.clone();
        var z = randn(new long[] { 12, 3 }, dtype: ScalarType.Float64, generator: new Generator(5)).Times(3);
        vq.train();
        using var output = vq.Quantize(z);
        // Reproduce by hand: rescale, then one EMA step from cluster sizes 1 and averages = codes.
        var scaled = initial * (z.norm(1).mean() / initial.norm(1).mean());
        var counts = bincount(output.Indices, minlength: 6).to_type(ScalarType.Float64);
        var sums = zeros_like(scaled).IndexAdd_(0, output.Indices, z);
        var clusterSize = ones(6, dtype: ScalarType.Float64).Times(0.5).Plus(counts.Times(0.5));
        var embedAvg = scaled.Times(0.5).Plus(sums.Times(0.5));
        var n = clusterSize.sum();
        var smoothed = clusterSize.Plus(1e-5) / n.Plus(6 * 1e-5) * n;
        Assert.That((vq.Codebook - embedAvg / smoothed.unsqueeze(1)).abs().max().item<double>(), Is.LessThan(1e-12));
        // The indices were chosen against the rescaled codebook.
        Assert.That(Longs(output.Indices), Is.EqualTo(NearestEuclidean(Rows(z), Rows(scaled))));
    }

    [Test]
    public void SameSeedSameCodebook()
    {
        using var scope = NewDisposeScope();
        var z = randn(new long[] { 20, 3 }, dtype: ScalarType.Float64, generator: new Generator(6));
        using var a = Make(FirstBatchInit.SampleInputs);
        using var b = Make(FirstBatchInit.SampleInputs);
        a.train();
        b.train();
        using (var _ = a.Quantize(z)) { }
        using (var _ = b.Quantize(z)) { }
        Assert.That(a.Codebook.equal(b.Codebook).all().item<bool>(), Is.True);
    }

    [Test]
    public void ConflictingOrUndefinedChoicesAreRefused()
    {
        var both = Assert.Throws<ArgumentException>(() => new VectorQuantizerOptions { KMeansInit = true, FirstBatchInit = FirstBatchInit.SampleInputs }.Validate());
        Assert.That(both!.ParamName, Is.EqualTo("FirstBatchInit"));
        Assert.That(both.Message, Does.Contain("KMeansInit"));
        var cosine = Assert.Throws<ArgumentException>(() => new VectorQuantizerOptions { FirstBatchInit = FirstBatchInit.MatchInputNorm, Distance = QuantizerDistance.Cosine }.Validate());
        Assert.That(cosine!.Message, Does.Contain("Cosine"));
        var undefined = Assert.Throws<ArgumentOutOfRangeException>(() => new VectorQuantizerOptions { FirstBatchInit = (FirstBatchInit)9 }.Validate());
        Assert.That(undefined!.Message, Does.Contain("9"));
        // The default keeps the official state dict: no initialized flag.
        using var plain = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 4, Dim = 2 });
        Assert.That(plain.state_dict().Keys, Is.EquivalentTo(new[] { "weight" }));
    }
}
