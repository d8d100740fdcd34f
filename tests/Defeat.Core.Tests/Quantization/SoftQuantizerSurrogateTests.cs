using Defeat.Quantization;
using Defeat.Tests.Fakes;
using static Defeat.Tests.Quantization.Reference;

namespace Defeat.Tests.Quantization;

/// <summary>The soft-VQ surrogate's value and gradient, and the quantizers' distances, against hand computations.</summary>
public class SoftQuantizerSurrogateTests
{
    // Softmin weights softmax(-d / (tau * gap)) and the surrogate's Jacobian (2 / (tau gap)) Cov_w(e), by hand.
    private static (double[] Weights, double Scale) Weights(double[] d, double tau)
    {
        var sorted = d.OrderBy(x => x).ToArray();
        double gap = d.Length >= 2 ? Math.Max(sorted[1] - sorted[0], 1e-12) : 1;
        var w = d.Select(x => Math.Exp(-(x - sorted[0]) / (tau * gap))).ToArray();
        double sum = w.Sum();
        return (w.Select(x => x / sum).ToArray(), 2 / (tau * gap));
    }

    internal static double[] SurrogateGradient(double[] z, double[][] codes, double[] g, double tau)
    {
        var d = codes.Select(c => SquaredDistance(z, c)).ToArray();
        var (w, scale) = Weights(d, tau);
        int dim = z.Length;
        var mean = new double[dim];
        for (int k = 0; k < codes.Length; k++)
            for (int i = 0; i < dim; i++)
                mean[i] += w[k] * codes[k][i];
        var grad = new double[dim];
        for (int k = 0; k < codes.Length; k++)
        {
            double projection = 0;
            for (int i = 0; i < dim; i++) projection += (codes[k][i] - mean[i]) * g[i];
            for (int i = 0; i < dim; i++) grad[i] += scale * w[k] * (codes[k][i] - mean[i]) * projection;
        }
        return grad;
    }

    [Test]
    public void OneDimensionalCaseMatchesTheHandComputation()
    {
        using var scope = NewDisposeScope();
        // Codes -1, 0.5, 2 and z = 0.2: distances 1.44, 0.09, 3.24; gap 1.35; nearest code 0.5.
        var codes = tensor(new double[] { -1, 0.5, 2 }).reshape(3, 1);
        var z = tensor(new double[] { 0.2 }).reshape(1, 1).requires_grad_(true);
        var distances = (z - codes.t()).Square();
        var output = SoftQuantizerSurrogate.Apply(tensor(new double[] { 0.5 }).reshape(1, 1), distances, codes, 1.0);
        Assert.That(output.item<double>(), Is.EqualTo(0.5), "the forward value is the hard code");
        var grad = autograd.grad(new[] { output.sum() }, new[] { z })[0].item<double>();

        double gap = 1.44 - 0.09;
        var w = new[] { 1.44, 0.09, 3.24 }.Select(d => Math.Exp(-d / gap)).ToArray();
        w = w.Select(x => x / w.Sum()).ToArray();
        double mean = -1 * w[0] + 0.5 * w[1] + 2 * w[2];
        double variance = w[0] * 1 + w[1] * 0.25 + w[2] * 4 - mean * mean;
        Assert.That(grad, Is.EqualTo(2 / gap * variance).Within(1e-12));
        // A higher temperature spreads the weights: the derivative differs, and stays positive (moving z toward 2 raises the mixture).
        var hot = SoftQuantizerSurrogate.Apply(tensor(new double[] { 0.5 }).reshape(1, 1), (z - codes.t()).Square(), codes, 10.0);
        var hotGrad = autograd.grad(new[] { hot.sum() }, new[] { z })[0].item<double>();
        Assert.That(hotGrad, Is.Positive.And.Not.EqualTo(grad).Within(1e-6));
    }

    [Test]
    public void GradientIsTheWeightedCodeCovarianceTimesTheIncomingGradient()
    {
        using var scope = NewDisposeScope();
        using var vq = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 5, Dim = 3, InitScale = 1.5, Seed = 7 });
        vq.to(ScalarType.Float64);
        vq.eval();
        var z = randn(new long[] { 4, 3 }, dtype: ScalarType.Float64, generator: new Generator(3)).requires_grad_(true);
        var g = randn(new long[] { 4, 3 }, dtype: ScalarType.Float64, generator: new Generator(4));
        using var hard = vq.Quantize(z);
        foreach (var tau in new[] { 0.3, 1.0, 3.0 })
        {
            var soft = SoftQuantizerSurrogate.Apply(hard.Quantized, vq.Distances(z), vq.Lookup(ScalarOps.Arange(5)), tau);
            Assert.That(soft.equal(hard.Quantized).all().item<bool>(), Is.True);
            var grad = Rows(autograd.grad(new[] { (soft * g).sum() }, new[] { z })[0]);
            var zs = Rows(z);
            var gs = Rows(g);
            var codes = Rows(vq.Codebook);
            for (int row = 0; row < 4; row++)
                Assert.That(grad[row], Is.EqualTo(SurrogateGradient(zs[row], codes, gs[row], tau)).Within(1e-10), $"tau {tau}, row {row}");
        }
    }

    [Test]
    public void ASingleCodeGivesNoGradient()
    {
        using var scope = NewDisposeScope();
        var z = tensor(new double[] { 0.3, -0.2 }).reshape(1, 2).requires_grad_(true);
        var code = tensor(new double[] { 1, 1 }).reshape(1, 2);
        var soft = SoftQuantizerSurrogate.Apply(code, (z - code).Square().sum(1, keepdim: true), code, 1.0);
        var grad = autograd.grad(new[] { soft.sum() }, new[] { z })[0];
        Assert.That(grad.abs().max().item<double>(), Is.EqualTo(0));
    }

    [Test]
    public void BadArgumentsAreRefused()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => SoftQuantizerSurrogate.Apply(zeros(2, 3), zeros(2, 4), zeros(4, 3), 0));
        Assert.That(e!.ParamName, Is.EqualTo("temperature"));
        var shape = Assert.Throws<ArgumentException>(() => SoftQuantizerSurrogate.Apply(zeros(2, 3), zeros(2, 5), zeros(4, 3), 1));
        Assert.That(shape!.ParamName, Is.EqualTo("distances"));
        Assert.That(shape.Message, Does.Contain("[2, 4]"));
        Assert.Throws<ArgumentException>(() => SoftQuantizerSurrogate.Apply(zeros(2, 3), zeros(2, 4), zeros(4, 2), 1));
    }

    [Test]
    public void DistancesAreTheBruteForceOnesForEveryQuantizer()
    {
        using var scope = NewDisposeScope();
        var z = randn(new long[] { 2, 3, 4 }, dtype: ScalarType.Float64, generator: new Generator(8));
        using var euclidean = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 5, Dim = 4, InitScale = 2, Seed = 1 });
        using var cosine = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 5, Dim = 4, Seed = 1, Distance = QuantizerDistance.Cosine });
        euclidean.to(ScalarType.Float64);
        cosine.to(ScalarType.Float64);
        var fake = new NearestCodeQuantizer(euclidean.Codebook.detach().clone());
        var rows = Rows(z.reshape(-1, 4));
        foreach (var (name, q, unit) in new (string, IVectorQuantizer, bool)[] { ("euclidean", euclidean, false), ("cosine", cosine, true), ("interface default", fake, false) })
        {
            var d = q.Distances(z);
            Assert.That(d.shape, Is.EqualTo(new long[] { 2, 3, 5 }), name);
            var got = Rows(d.reshape(-1, 5));
            var codes = Rows(q.Lookup(ScalarOps.Arange(5)));
            for (int m = 0; m < rows.Length; m++)
                for (int k = 0; k < 5; k++)
                    Assert.That(got[m][k], Is.EqualTo(SquaredDistance(unit ? Unit(rows[m]) : rows[m], codes[k])).Within(1e-12), $"{name} [{m},{k}]");
            // The nearest code is the quantizer's choice.
            using var output = q.Quantize(z);
            Assert.That(Longs(d.argmin(-1)), Is.EqualTo(Longs(output.Indices)), name);
        }
        // Distances never change a training-mode quantizer (no init, no EMA, no restart).
        using var ema = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 5, Dim = 4, KMeansInit = true, CodebookUpdate = CodebookUpdate.ExponentialMovingAverage, DeadCodeThreshold = 1 });
        ema.train();
        var before = ema.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        _ = ema.Distances(z.to_type(ScalarType.Float32));
        foreach (var (key, value) in ema.state_dict())
            Assert.That(value.equal(before[key]).all().item<bool>(), Is.True, key);
        Assert.Throws<ArgumentException>(() => euclidean.Distances(zeros(2, 3, dtype: ScalarType.Float64)));
    }
}
