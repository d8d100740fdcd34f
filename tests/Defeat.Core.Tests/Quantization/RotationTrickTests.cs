using Defeat.Quantization;
using static Defeat.Tests.Quantization.Reference;

namespace Defeat.Tests.Quantization;

/// <summary>
/// The rotation trick (Fifty et al., 2024) against its formula, built by hand with explicit matrices: the gradient
/// reaching z is lambda * R^T g with lambda = |e|/|z| and R the rotation in the plane of z and e that takes z/|z| to e/|e|.
/// </summary>
public class RotationTrickTests
{
    // The rotation in span(u, v) taking unit u to unit v, identity on the orthogonal complement, by Gram-Schmidt:
    // R = I + (cos t - 1)(a a^T + b b^T) + sin t (b a^T - a b^T), a = u, b = unit(v - (v.u) u).
    private static double[,] PlaneRotation(double[] u, double[] v)
    {
        int d = u.Length;
        double c = u.Zip(v, (x, y) => x * y).Sum();
        var b = v.Select((vi, i) => vi - c * u[i]).ToArray();
        double s = Math.Sqrt(b.Sum(x => x * x));
        b = b.Select(x => x / s).ToArray();
        var r = new double[d, d];
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
                r[i, j] = (i == j ? 1 : 0) + (c - 1) * (u[i] * u[j] + b[i] * b[j]) + s * (b[i] * u[j] - u[i] * b[j]);
        return r;
    }

    // The paper's Householder form R = I - 2 r r^T + 2 v u^T, r = unit(u + v), as an explicit matrix.
    private static double[,] HouseholderForm(double[] u, double[] v)
    {
        int d = u.Length;
        var r = Unit(u.Zip(v, (x, y) => x + y).ToArray());
        var m = new double[d, d];
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
                m[i, j] = (i == j ? 1 : 0) - 2 * r[i] * r[j] + 2 * v[i] * u[j];
        return m;
    }

    private static double[] TransposeTimes(double[,] m, double[] g)
    {
        int d = g.Length;
        var result = new double[d];
        for (int j = 0; j < d; j++)
            for (int i = 0; i < d; i++)
                result[j] += m[i, j] * g[i];
        return result;
    }

    private static double[] Times(double[,] m, double[] x)
    {
        int d = x.Length;
        var result = new double[d];
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
                result[i] += m[i, j] * x[j];
        return result;
    }

    private static double Norm(double[] x) => Math.Sqrt(x.Sum(v => v * v));

    [Test]
    public void GradientIsLambdaTimesTheTransposedRotationAndTheForwardIsTheCodeword()
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(11);
        var z = randn(new long[] { 4, 5 }, dtype: ScalarType.Float64, generator: generator).requires_grad_(true);
        var e = randn(new long[] { 4, 5 }, dtype: ScalarType.Float64, generator: generator).Times(3);
        var g = randn(new long[] { 4, 5 }, dtype: ScalarType.Float64, generator: generator);

        var q = RotationTrick.Apply(z, e);
        Assert.That(q.equal(e).all().item<bool>(), Is.True, "the forward value is exactly the codeword");
        var grad = autograd.grad(new[] { (q * g).sum() }, new[] { z })[0];

        var zs = Rows(z);
        var es = Rows(e);
        var gs = Rows(g);
        var got = Rows(grad);
        for (int row = 0; row < 4; row++)
        {
            var u = Unit(zs[row]);
            var v = Unit(es[row]);
            var rotation = PlaneRotation(u, v);
            double lambda = Norm(es[row]) / Norm(zs[row]);
            // The hand-built map does what the paper says: lambda R z = e, and it equals the Householder form.
            var mapped = Times(rotation, zs[row]).Select(x => x * lambda).ToArray();
            Assert.That(mapped, Is.EqualTo(es[row]).Within(1e-12), $"lambda R z = e, row {row}");
            var householder = HouseholderForm(u, v);
            for (int i = 0; i < 5; i++)
                for (int j = 0; j < 5; j++)
                    Assert.That(householder[i, j], Is.EqualTo(rotation[i, j]).Within(1e-12), $"R[{i},{j}], row {row}");

            var expected = TransposeTimes(rotation, gs[row]).Select(x => x * lambda).ToArray();
            Assert.That(got[row], Is.EqualTo(expected).Within(1e-12), $"gradient, row {row}");
        }
        // Not the straight-through gradient: the rotation changed it.
        Assert.That((grad - g).abs().max().item<double>(), Is.GreaterThan(1e-3));
    }

    [Test]
    public void DegenerateRowsFallBackToStraightThrough()
    {
        using var scope = NewDisposeScope();
        // Row 0: z = 0; row 1: z points exactly away from e; row 2: an ordinary row.
        var z = tensor(new double[,] { { 0, 0, 0 }, { -2, 0, 0 }, { 1, 1, 0 } }).requires_grad_(true);
        var e = tensor(new double[,] { { 1, 2, 3 }, { 3, 0, 0 }, { 0, 2, 0 } });
        var g = tensor(new double[,] { { 1, -1, 2 }, { 0.5, 1, -1 }, { 1, 0, 3 } });
        var q = RotationTrick.Apply(z, e);
        var grad = autograd.grad(new[] { (q * g).sum() }, new[] { z })[0];
        Assert.That(q.equal(e).all().item<bool>(), Is.True);
        Assert.That(Rows(grad)[0], Is.EqualTo(Rows(g)[0]));
        Assert.That(Rows(grad)[1], Is.EqualTo(Rows(g)[1]));
        // Row 2 by hand: u = (1,1,0)/sqrt2, v = (0,1,0), lambda = 2/sqrt2 = sqrt2; rotation by 45 degrees in the xy plane
        // taking u to v: R^T g = (cos45*1 + sin45*0 ... ) computed through the explicit matrix.
        var rotation = PlaneRotation(Unit([1, 1, 0]), [0, 1, 0]);
        var expected = TransposeTimes(rotation, [1, 0, 3]).Select(x => x * Math.Sqrt(2)).ToArray();
        Assert.That(Rows(grad)[2], Is.EqualTo(expected).Within(1e-12));
        // That rotation leaves the z axis alone: the third gradient component passes scaled by lambda only.
        Assert.That(Rows(grad)[2][2], Is.EqualTo(3 * Math.Sqrt(2)).Within(1e-12));
    }

    [Test]
    public void QuantizerWithTheRotationTrickKeepsItsOutputsAndRotatesTheInputGradient()
    {
        using var scope = NewDisposeScope();
        var options = new VectorQuantizerOptions { CodebookSize = 7, Dim = 3, InitScale = 1.5, Seed = 4 };
        using var plain = new VectorQuantizer(options);
        using var rotated = new VectorQuantizer(options with { GradientEstimator = GradientEstimator.RotationTrick });
        plain.to(ScalarType.Float64);
        rotated.to(ScalarType.Float64);
        Assert.That(rotated.Codebook.equal(plain.Codebook).all().item<bool>(), Is.True, "same seed, same codebook");
        Assert.That(rotated.state_dict().Keys, Is.EquivalentTo(new[] { "weight" }), "no new state");

        var z = randn(new long[] { 2, 6, 3 }, dtype: ScalarType.Float64, generator: new Generator(5)).requires_grad_(true);
        var g = randn(new long[] { 2, 6, 3 }, dtype: ScalarType.Float64, generator: new Generator(6));
        using var a = plain.Quantize(z);
        using var b = rotated.Quantize(z);
        Assert.That(b.Quantized.equal(a.Quantized).all().item<bool>(), Is.True);
        Assert.That(b.Indices.equal(a.Indices).all().item<bool>(), Is.True);
        Assert.That(b.CodebookLoss.item<double>(), Is.EqualTo(a.CodebookLoss.item<double>()));

        var grad = autograd.grad(new[] { (b.Quantized * g).sum() }, new[] { z })[0];
        var zs = Rows(z.reshape(-1, 3));
        var gs = Rows(g.reshape(-1, 3));
        var es = Rows(b.Quantized.reshape(-1, 3));
        var got = Rows(grad.reshape(-1, 3));
        for (int row = 0; row < zs.Length; row++)
        {
            var expected = TransposeTimes(PlaneRotation(Unit(zs[row]), Unit(es[row])), gs[row])
                .Select(x => x * Norm(es[row]) / Norm(zs[row])).ToArray();
            Assert.That(got[row], Is.EqualTo(expected).Within(1e-10), $"row {row}");
        }
        // The codebook still learns only from the codebook loss: the output gives it no gradient.
        using var again = rotated.Quantize(z);
        (again.Quantized * g).sum().backward();
        Assert.That(rotated.Codebook.grad is null || rotated.Codebook.grad.abs().max().item<double>() == 0, Is.True);
    }

    [Test]
    public void InCosineModeTheRotationMapsTheRawInputOntoTheUnitCodeword()
    {
        using var scope = NewDisposeScope();
        using var vq = new VectorQuantizer(new VectorQuantizerOptions
        {
            CodebookSize = 5, Dim = 3, Seed = 2, Distance = QuantizerDistance.Cosine, GradientEstimator = GradientEstimator.RotationTrick,
        });
        vq.to(ScalarType.Float64);
        var z = randn(new long[] { 4, 3 }, dtype: ScalarType.Float64, generator: new Generator(8)).Times(4).requires_grad_(true);
        var g = randn(new long[] { 4, 3 }, dtype: ScalarType.Float64, generator: new Generator(9));
        using var output = vq.Quantize(z);
        var grad = autograd.grad(new[] { (output.Quantized * g).sum() }, new[] { z })[0];
        var zs = Rows(z);
        var es = Rows(output.Quantized);
        var got = Rows(grad);
        for (int row = 0; row < 4; row++)
        {
            Assert.That(Norm(es[row]), Is.EqualTo(1).Within(1e-12));
            // lambda = |e| / |z| = 1 / |z|.
            var expected = TransposeTimes(PlaneRotation(Unit(zs[row]), es[row]), Rows(g)[row]).Select(x => x / Norm(zs[row])).ToArray();
            Assert.That(got[row], Is.EqualTo(expected).Within(1e-10), $"row {row}");
        }
    }

    [Test]
    public void BadShapesAndAnUndefinedEstimatorAreRefused()
    {
        using var scope = NewDisposeScope();
        Assert.Throws<ArgumentException>(() => RotationTrick.Apply(zeros(3), zeros(3)));
        var e = Assert.Throws<ArgumentException>(() => RotationTrick.Apply(zeros(2, 3), zeros(2, 4)));
        Assert.That(e!.ParamName, Is.EqualTo("codewords"));
        var bad = Assert.Throws<ArgumentOutOfRangeException>(() => new VectorQuantizer(new VectorQuantizerOptions { GradientEstimator = (GradientEstimator)7 }));
        Assert.That(bad!.ParamName, Is.EqualTo("GradientEstimator"));
        Assert.That(bad.Message, Does.Contain("7"));
    }
}
