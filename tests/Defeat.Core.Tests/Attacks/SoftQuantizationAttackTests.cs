using Defeat.Model;
using Defeat.Attacks;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Prompting;
using Defeat.Quantization;
using Defeat.Shield;
using Defeat.Tests.Fakes;
using Defeat.Training;

namespace Defeat.Tests.Attacks;

/// <summary>The soft-VQ surrogate attack: where BPDA's gradient points the wrong way and the surrogate's does not.</summary>
public class SoftQuantizationAttackTests
{
    private sealed class Scope(Action restore) : IDisposable
    {
        public void Dispose() => restore();
    }

    /// <summary>
    /// Two pixels x, latent z = A x with A = [[1, 2], [0, 1]], codewords e0 = (0, 0) and e1 = (1, 0) (boundary z_x = 0.5),
    /// and logits (1 - 2 q_x + 5 q_y, 0) of the code q: class 0 at e0, class 1 at e1. At e0 the cross-entropy of class 0
    /// grows along (2, -5) in code space, mostly toward q_y, where there is no codeword; straight-through copies that
    /// to z, and A^T (2, -5) = (2, -1) moves z_x by eps - 2 eps &lt; 0, away from e1. The surrogate's gradient is
    /// Cov_w(e) (2, -5), which points along e1 - e0 = (1, 0); A^T (1, 0) = (1, 2) moves z_x by 3 eps, across the boundary.
    /// </summary>
    private sealed class ToyDefence : IDisposable
    {
        private readonly VectorQuantizer _quantizer;
        private readonly Tensor _a = tensor(new float[] { 1, 2, 0, 1 }).reshape(2, 2);
        private double? _temperature;

        public ToyDefence()
        {
            _quantizer = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 2, Dim = 2, Seed = 1 });
            _quantizer.eval();
            using (no_grad()) _quantizer.Codebook.copy_(tensor(new float[] { 0, 0, 1, 0 }).reshape(2, 2));
        }

        public Tensor Logits(Tensor images)
        {
            var z = images.flatten(1).matmul(_a.t());
            var q = _quantizer.Quantize(z).Quantized;
            if (_temperature is { } t)
                q = SoftQuantizerSurrogate.Apply(q, _quantizer.Distances(z), _quantizer.Lookup(ScalarOps.Arange(2)), t);
            var l0 = q[.., 0].Times(2).RSub(1).Plus(q[.., 1].Times(5));
            return stack([l0, zeros_like(l0)], 1);
        }

        public IDisposable Use(double temperature)
        {
            var previous = _temperature;
            _temperature = temperature;
            return new Scope(() => _temperature = previous);
        }

        public void Dispose() => _quantizer.Dispose();
    }

    [Test]
    public void TheSurrogateCrossesTheCodeBoundaryWhereStraightThroughWalksAway()
    {
        using var scope = NewDisposeScope();
        using var defence = new ToyDefence();
        var x = tensor(new float[] { 0.2f, 0.1f }).reshape(1, 1, 1, 2); // z = (0.4, 0.1): code e0, class 0
        var y = tensor(new long[] { 0 });
        Assert.That(defence.Logits(x).argmax(1).item<long>(), Is.EqualTo(0));
        var pgd = new PgdOptions { Epsilon = 0.05, StepSize = 0.05, Steps = 3, RandomStart = false };

        var bpda = new PgdAttack(pgd).Perturb(defence.Logits, x, y);
        // Straight-through: every step along sign(A^T (2, -5)) = (+, -), to the corner (0.25, 0.05): z_x = 0.35, still e0.
        Assert.That(bpda.reshape(-1).data<float>().ToArray(), Is.EqualTo(new[] { 0.25f, 0.05f }).Within(1e-6));
        Assert.That(defence.Logits(bpda).argmax(1).item<long>(), Is.EqualTo(0), "BPDA fails");

        var soft = new SoftQuantizationAttack(pgd, [1.0], defence.Use).Perturb(defence.Logits, x, y);
        // Surrogate: sign(A^T (1, 0)) = (+, +), to (0.25, 0.15): z_x = 0.55, code e1, class 1.
        Assert.That(soft.reshape(-1).data<float>().ToArray(), Is.EqualTo(new[] { 0.25f, 0.15f }).Within(1e-6));
        Assert.That(defence.Logits(soft).argmax(1).item<long>(), Is.EqualTo(1), "the surrogate attack succeeds");
    }

    [Test]
    public void EachImageKeepsTheTemperatureThatDidBestAndScoringRunsOutsideTheSwitch()
    {
        using var scope = NewDisposeScope();
        double? temperature = null;
        var seen = new List<double?>();
        // One pixel p, logits (0.5 - p, p - 0.5): class 0 below 0.5. The backward slope of p depends on the temperature:
        // at tau 1 image 0's gradient points up (toward success) and image 1's down; at tau 2 the reverse.
        Tensor Model(Tensor images)
        {
            seen.Add(temperature);
            var p = images.flatten(1);
            var slope = temperature switch
            {
                1.0 => tensor(new float[] { 1, -1 }),
                2.0 => tensor(new float[] { -1, 1 }),
                _ => ones(2),
            };
            var surrogate = p.detach().Plus((p - p.detach()) * slope.reshape(2, 1));
            return cat([surrogate.RSub(0.5f), surrogate.Minus(0.5f)], 1);
        }
        IDisposable Use(double t)
        {
            var previous = temperature;
            temperature = t;
            return new Scope(() => temperature = previous);
        }
        var x = ScalarOps.Full(new long[] { 2, 1, 1, 1 }, 0.45f);
        var y = tensor(new long[] { 0, 0 });
        var pgd = new PgdOptions { Epsilon = 0.1, StepSize = 0.1, Steps = 1, RandomStart = false };

        var one = new SoftQuantizationAttack(pgd, [1.0], Use).Perturb(Model, x, y);
        Assert.That(one.reshape(-1).data<float>().ToArray(), Is.EqualTo(new[] { 0.55f, 0.35f }).Within(1e-6));

        seen.Clear();
        var both = new SoftQuantizationAttack(pgd, [1.0, 2.0], Use).Perturb(Model, x, y);
        Assert.That(both.reshape(-1).data<float>().ToArray(), Is.EqualTo(new[] { 0.55f, 0.55f }).Within(1e-6));
        Assert.That(temperature, Is.Null, "the switch is off after the attack");
        // PGD's calls run under the switch; each temperature's scoring call runs outside it.
        Assert.That(seen.Where(t => t is null).Count(), Is.EqualTo(2));
        Assert.That(seen.Where(t => t is not null).Distinct(), Is.EquivalentTo(new double?[] { 1.0, 2.0 }));

        // An empty batch: empty result, model never called.
        seen.Clear();
        var empty = new SoftQuantizationAttack(pgd, [1.0], Use).Perturb(Model, zeros(0, 1, 1, 1), zeros(0, dtype: ScalarType.Int64));
        Assert.That(empty.shape, Is.EqualTo(new long[] { 0, 1, 1, 1 }));
        Assert.That(seen, Is.Empty);
    }

    [Test]
    public void BadTemperaturesAreRefused()
    {
        IDisposable Use(double t) => new Scope(() => { });
        Assert.Throws<ArgumentException>(() => new SoftQuantizationAttack(new PgdOptions(), [], Use));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new SoftQuantizationAttack(new PgdOptions(), [1.0, -2.0], Use));
        Assert.That(e!.Message, Does.Contain("-2"));
        var o = Assert.Throws<ArgumentOutOfRangeException>(() => new AdaptiveAttackOptions { SoftQuantizationTemperatures = [0.0] }.Validate());
        Assert.That(o!.ParamName, Is.EqualTo("SoftQuantizationTemperatures"));
    }

    private static DefeatModel Model()
    {
        var backbone = new FakeBackbone(seed: 3);
        manual_seed(4);
        var model = DefeatModel.Create(backbone, ["cat", "dog", "red car", "bird"], promptOptions: new PromptLearnerOptions { ContextLength = 4, Seed = 1 },
            shieldOptions: new PerturbShieldOptions { HiddenDim = 4, CodebookSize = 16, Quantizer = new VectorQuantizerOptions { CodebookSize = 16, Dim = 4, InitScale = 1, Seed = 1 } });
        model.eval();
        return model;
    }

    [Test]
    public void OnDefeatTheSurrogateKeepsTheLogitsAndChangesTheInputGradient()
    {
        using var model = Model();
        using var scope = NewDisposeScope();
        var x = rand([2, 3, 12, 12], generator: new Generator(5)).requires_grad_(true);
        var plain = model.Logits(x, Branch.Robust);
        var plainGrad = autograd.grad([plain[.., 0].sum()], [x])[0];
        using (model.Shield!.UseSoftQuantization(1.0))
        {
            var soft = model.Logits(x, Branch.Robust);
            Assert.That(soft.equal(plain).all().item<bool>(), Is.True, "forward exact");
            var softGrad = autograd.grad([soft[.., 0].sum()], [x])[0];
            Assert.That((softGrad - plainGrad).abs().max().item<float>(), Is.GreaterThan(0f));
            Assert.That(softGrad.isfinite().all().item<bool>(), Is.True);
        }
    }

    [Test]
    public void TheSuiteAddsTheSurrogateAttacksOnlyWhenTemperaturesAreGiven()
    {
        using var model = Model();
        var plain = AdaptiveAttackSuite.Attacks(model, new AdaptiveAttackOptions { Steps = 2 });
        Assert.That(plain.Select(a => a.Name), Has.None.Contains("softvq"));
        var options = new AdaptiveAttackOptions { Steps = 2, StepFraction = 0.5, Seed = 3, SoftQuantizationTemperatures = [0.5, 2] };
        var suite = AdaptiveAttackSuite.Attacks(model, options);
        Assert.That(suite.Select(a => a.Name), Is.EqualTo(plain.Select(a => a.Name).Concat(["pgd-softvq/fused", "pgd-softvq/robust"])));
        var soft = suite.Where(a => a.Name.Contains("softvq")).ToList();
        Assert.That(soft.Select(a => a.Target), Is.EqualTo(new[] { AdaptiveAttackSuite.Fused, AdaptiveAttackSuite.Robust }));
        var attack = (SoftQuantizationAttack)soft[1].Factory(0.1);
        Assert.That(attack.Temperatures, Is.EqualTo(new[] { 0.5, 2 }));
        Assert.That((attack.Options.Epsilon, attack.Options.StepSize, attack.Options.Steps, attack.Options.Loss), Is.EqualTo((0.1, 0.05, 2, AttackLoss.CrossEntropy)));

        // Run through the evaluator: every image counts as robust only if it survives these too, and the shield's switch ends off.
        var x = rand([3, 3, 12, 12], generator: new Generator(6));
        Tensor predicted;
        using (no_grad()) predicted = model.Logits(x).argmax(-1);
        using var set = new LabeledImages(x, predicted, ["cat", "dog", "red car", "bird"]);
        var report = new RobustnessEvaluator(new RobustnessEvaluatorOptions { Epsilons = [8.0 / 255], BatchSize = 3, Attacks = suite })
            .Evaluate(AdaptiveAttackSuite.Subject(model), set);
        var r = report.ByEpsilon.Single();
        Assert.That(r.RobustAccuracyByTarget.Keys, Does.Contain("pgd-softvq/fused").And.Contain("pgd-softvq/robust"));
        Assert.That(r.RobustAccuracy, Is.LessThanOrEqualTo(r.RobustAccuracyByTarget.Values.Min()));
        Assert.That(((PerturbShield)model.Shield!).VqVae.SoftQuantizationTemperature, Is.Null);
    }
}
