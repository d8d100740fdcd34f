using Defeat.Fusion;

namespace Defeat.Tests.Fusion;

public class LogitFusionTests
{
    private static readonly float[] Clean = { 2, 0, -1, 0.5f, 0.5f, 3 };
    private static readonly float[] Robust = { -1, 1, 4, 1, 0, 0 };

    private static Tensor T(float[] values) => tensor(values).reshape(2, 3);

    private static double[] Softmax(IEnumerable<double> z)
    {
        var e = z.Select(Math.Exp).ToArray();
        var s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    [Test]
    public void LogitAverageIsWeightedSum()
    {
        using var scope = NewDisposeScope();
        var fusion = new LogitFusion(new LogitFusionOptions { Alpha = 0.3 });
        var fused = fusion.Fuse(T(Clean), T(Robust)).data<float>().ToArray();
        Assert.That(fused, Is.EqualTo(Clean.Zip(Robust, (c, r) => 0.3 * c + 0.7 * r)).Within(1e-6));
        Assert.That(fusion.parameters(), Is.Empty);
        Assert.That(new LogitFusion().Options.Alpha, Is.EqualTo(0.5));
    }

    [Test]
    public void ProbabilityAverageReturnsLogOfMixedSoftmax()
    {
        using var scope = NewDisposeScope();
        var fused = new LogitFusion(new LogitFusionOptions { Mode = FusionMode.ProbabilityAverage, Alpha = 0.25 })
            .Fuse(T(Clean), T(Robust)).data<float>().ToArray();
        var expected = new List<double>();
        for (var row = 0; row < 2; row++)
        {
            var p = Softmax(Clean.Skip(3 * row).Take(3).Select(v => (double)v));
            var q = Softmax(Robust.Skip(3 * row).Take(3).Select(v => (double)v));
            expected.AddRange(p.Zip(q, (a, b) => Math.Log(0.25 * a + 0.75 * b)));
        }
        Assert.That(fused, Is.EqualTo(expected).Within(1e-5));
    }

    [Test]
    public void LearnableAlphaStartsAtAlphaAndReceivesGradient()
    {
        using var scope = NewDisposeScope();
        var fusion = new LogitFusion(new LogitFusionOptions { Mode = FusionMode.LearnableAlpha, Alpha = 0.2 });
        Assert.That(fusion.CurrentAlpha, Is.EqualTo(0.2).Within(1e-6));
        var fused = fusion.Fuse(T(Clean), T(Robust));
        Assert.That(fused.data<float>().ToArray(), Is.EqualTo(Clean.Zip(Robust, (c, r) => 0.2 * c + 0.8 * r)).Within(1e-5));

        fused.sum().backward();
        // d/da sum(s(a) c + (1 - s(a)) r) = s(a)(1 - s(a)) * sum(c - r)
        var expected = 0.2 * 0.8 * Clean.Zip(Robust, (c, r) => (double)c - r).Sum();
        var parameter = fusion.named_parameters().Single();
        Assert.That(parameter.name, Is.EqualTo("alpha_logit"));
        Assert.That(parameter.parameter.grad!.item<float>(), Is.EqualTo(expected).Within(1e-5));
    }

    [TestCase(ConfidenceMeasure.MaxProbability)]
    [TestCase(ConfidenceMeasure.NegativeEntropy)]
    public void AdaptiveWeighsBranchesByConfidence(ConfidenceMeasure measure)
    {
        using var scope = NewDisposeScope();
        const double temperature = 0.5;
        var fused = new LogitFusion(new LogitFusionOptions { Mode = FusionMode.Adaptive, Confidence = measure, Temperature = temperature })
            .Fuse(T(Clean), T(Robust)).data<float>().ToArray();
        for (var row = 0; row < 2; row++)
        {
            var c = Clean.Skip(3 * row).Take(3).Select(v => (double)v).ToArray();
            var r = Robust.Skip(3 * row).Take(3).Select(v => (double)v).ToArray();
            double Score(double[] z)
            {
                var p = Softmax(z);
                return measure == ConfidenceMeasure.MaxProbability ? p.Max() : p.Sum(v => v * Math.Log(v));
            }
            var w = Softmax(new[] { Score(c) / temperature, Score(r) / temperature });
            for (var k = 0; k < 3; k++)
                Assert.That(fused[3 * row + k], Is.EqualTo(w[0] * c[k] + w[1] * r[k]).Within(1e-5), $"row {row} class {k}");
        }
    }

    [Test]
    public void BadShapesAndOptionsGiveClearErrors()
    {
        using var scope = NewDisposeScope();
        var fusion = new LogitFusion();
        var e = Assert.Throws<ArgumentException>(() => fusion.Fuse(zeros(2, 3), zeros(2, 4)));
        Assert.That(e!.ParamName, Is.EqualTo("robust"));
        Assert.That(e.Message, Does.Contain("[2, 3]").And.Contain("[2, 4]"));
        var e2 = Assert.Throws<ArgumentException>(() => fusion.Fuse(zeros(6), zeros(6)));
        Assert.That(e2!.ParamName, Is.EqualTo("clean"));
        var e3 = Assert.Throws<ArgumentOutOfRangeException>(() => new LogitFusion(new LogitFusionOptions { Mode = FusionMode.LearnableAlpha, Alpha = 1 }));
        Assert.That(e3!.ParamName, Is.EqualTo("Alpha"));
        Assert.That(e3.Message, Does.Contain("(0, 1)"));
        var e4 = Assert.Throws<ArgumentOutOfRangeException>(() => new LogitFusion(new LogitFusionOptions { Temperature = 0 }));
        Assert.That(e4!.ParamName, Is.EqualTo("Temperature"));
    }
}
