using Defeat.Model;
using Defeat.Training;

namespace Defeat.Tests.Training;

/// <summary><see cref="FapLoss.AdversarialTerm"/> against the formula worked out in doubles.</summary>
public class FapLossTests
{
    [Test]
    public void AdversarialTermIsTheCosineWeightedKlOfTheCleanAndAdversarialDistributions()
    {
        double[][] clean = [[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]];
        double[][] adv = [[0.5, 1.5, 0.0], [1.0, 1.0, 1.0]];
        double[][] fc = [[1.0, 0.0], [3.0, 4.0]];
        double[][] fa = [[1.0, 1.0], [-3.0, 4.0]];

        static double[] Softmax(double[] z)
        {
            var e = z.Select(Math.Exp).ToArray();
            return e.Select(v => v / e.Sum()).ToArray();
        }
        double expected = 0;
        for (int b = 0; b < 2; b++)
        {
            var p = Softmax(clean[b]);
            var q = Softmax(adv[b]);
            double kl = p.Select((pc, c) => pc * Math.Log(pc / q[c])).Sum();
            double cos = (fc[b][0] * fa[b][0] + fc[b][1] * fa[b][1])
                         / (Math.Sqrt(fc[b][0] * fc[b][0] + fc[b][1] * fc[b][1]) * Math.Sqrt(fa[b][0] * fa[b][0] + fa[b][1] * fa[b][1]));
            expected += kl * (cos + 1) / 2;
        }

        static Tensor T(double[][] rows) => tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length], dtype: ScalarType.Float64);
        var got = FapLoss.AdversarialTerm(T(clean), T(adv), T(fc), T(fa)).item<double>();
        Assert.That(got, Is.EqualTo(expected).Within(1e-12));
        Assert.That(expected, Is.GreaterThan(0.01));
    }

    [Test]
    public void IdenticalCleanAndAdversarialLogitsCostNothing()
    {
        var logits = randn(3, 4, generator: new Generator(1));
        var features = randn(3, 5, generator: new Generator(2));
        Assert.That(FapLoss.AdversarialTerm(logits, logits.clone(), features, -features).item<float>(), Is.EqualTo(0).Within(1e-7));
    }

    [Test]
    public void MismatchedShapesAreRefusedWithTheShapes()
    {
        var e = Assert.Throws<ArgumentException>(() => FapLoss.AdversarialTerm(zeros(2, 3), zeros(2, 4), zeros(2, 5), zeros(2, 5)))!;
        Assert.That(e.Message, Does.Contain("[2, 3]").And.Contain("[2, 4]"));
        var f = Assert.Throws<ArgumentException>(() => FapLoss.AdversarialTerm(zeros(2, 3), zeros(2, 3), zeros(2, 5), zeros(3, 5)))!;
        Assert.That(f.Message, Does.Contain("[3, 5]"));
    }
}

/// <summary>Backbones without deep-prompt support are refused by FAP.</summary>
public class FapBackboneTests
{
    [Test]
    public void ABackboneWithoutDeepPromptsIsRefusedByName()
    {
        using var backbone = new Defeat.Tests.Fakes.FakeBackbone();
        var e = Assert.Throws<ArgumentException>(() => new Defeat.Prompting.FapPromptLearner(backbone, ["cat", "dog"]))!;
        Assert.That(e.ParamName, Is.EqualTo("backbone"));
        Assert.That(e.Message, Does.Contain("FakeBackbone").And.Contain("IDeepPromptBackbone"));
    }
}
