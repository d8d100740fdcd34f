using Defeat.Attacks;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Model;
using Defeat.Prompting;
using Defeat.Shield;
using Defeat.Tests.Fakes;

namespace Defeat.Tests.Evaluation;

/// <summary>The adaptive-attack machinery: several named attacks per radius, the suite for DEFEAT, and the sanity checks.</summary>
public class AdaptiveAttackTests
{
    /// <summary>Sets the given pixel of the listed batch rows to 0.1, and records the radius it was built for.</summary>
    private sealed class Darken(int pixel, params long[] rows) : IAdversarialAttack
    {
        public Tensor Perturb(Func<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
        {
            var result = images.clone();
            foreach (var r in rows) result[r, 0, 0, pixel] = tensor(0.1f);
            return result;
        }
    }

    private static Tensor Logits(Tensor images, int pixel)
    {
        var p = images.flatten(1)[.., pixel];
        return stack([p.RSub(0.5f), p.Minus(0.5f)], 1);
    }

    [Test]
    public void NamedAttacksRunOnTheirTargetsAndTheWorstCaseIsPerSample()
    {
        using var set = new LabeledImages(ScalarOps.Full([10, 1, 1, 2], 0.9f), ones(10, dtype: ScalarType.Int64), ["no", "yes"]);
        var seen = new List<string>();
        Func<Tensor, Tensor> fused = x => Logits(x, 0).Plus(Logits(x, 1));
        Func<Tensor, Tensor> branch = x => { seen.Add("branch"); return Logits(x, 1); };
        var subject = new EvaluationSubject("toy", fused,
            attackTargets: new Dictionary<string, Func<Tensor, Tensor>> { ["fused"] = fused, ["branch"] = branch });
        var radii = new List<(string, double)>();
        // Darkening either pixel of an image makes the fused logits tie (0 vs 0), and argmax picks class 0: wrong.
        var evaluator = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = [1.0 / 255, 2.0 / 255],
            BatchSize = 10,
            Attacks =
            [
                new NamedAttack("a", "fused", e => { radii.Add(("a", e)); return new Darken(0, 0, 1); }),
                new NamedAttack("b", "branch", e => { radii.Add(("b", e)); return new Darken(1, 1, 2); }),
                new NamedAttack("c", "fused", e => { radii.Add(("c", e)); return new Darken(0, 5); }),
            ],
        });
        var report = evaluator.Evaluate(subject, set);
        foreach (var r in report.ByEpsilon)
        {
            Assert.That(r.RobustAccuracyByTarget.Keys, Is.EqualTo(new[] { "a", "b", "c" }));
            Assert.That(r.RobustAccuracyByTarget["a"], Is.EqualTo(0.8));
            Assert.That(r.RobustAccuracyByTarget["b"], Is.EqualTo(0.8));
            Assert.That(r.RobustAccuracyByTarget["c"], Is.EqualTo(0.9));
            // Broken by at least one attack: rows {0, 1} U {1, 2} U {5} = 4 of 10.
            Assert.That(r.RobustAccuracy, Is.EqualTo(0.6));
        }
        // Each factory is called once per radius, with that radius.
        Assert.That(radii, Is.EquivalentTo(new[] { ("a", 1.0 / 255), ("b", 1.0 / 255), ("c", 1.0 / 255), ("a", 2.0 / 255), ("b", 2.0 / 255), ("c", 2.0 / 255) }));
    }

    [Test]
    public void NamedAttacksAreValidated()
    {
        using var set = new LabeledImages(ScalarOps.Full([2, 1, 1, 2], 0.9f), ones(2, dtype: ScalarType.Int64), ["no", "yes"]);
        var unknown = new RobustnessEvaluator(new RobustnessEvaluatorOptions { Attacks = [new NamedAttack("x", "robust", _ => new Darken(0))] });
        var e = Assert.Throws<ArgumentException>(() => unknown.Evaluate(new EvaluationSubject("s", x => Logits(x, 0)), set))!;
        Assert.That(e.Message, Does.Contain("\"robust\"").And.Contain("\"fused\""));
        var twice = Assert.Throws<ArgumentException>(() => new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Attacks = [new NamedAttack("x", "fused", _ => new Darken(0)), new NamedAttack("x", "fused", _ => new Darken(1))],
        }))!;
        Assert.That(twice.ParamName, Is.EqualTo("Attacks"));
        Assert.That(twice.Message, Does.Contain("\"x\" twice"));
        Assert.That(Assert.Throws<ArgumentException>(() => new RobustnessEvaluator(new RobustnessEvaluatorOptions { Attacks = [] }))!.ParamName, Is.EqualTo("Attacks"));
    }

    [Test]
    public void SuiteListsEveryAdaptiveAttackWithItsLossRestartsAndTarget()
    {
        var options = new AdaptiveAttackOptions { Steps = 7, StepFraction = 0.5, Restarts = 3, Seed = 10 };
        var suite = AdaptiveAttackSuite.Attacks(classes: 10, withBranches: true, options);
        Assert.That(suite.Select(a => (a.Name, a.Target)), Is.EqualTo(new[]
        {
            ("pgd-ce/fused", "fused"), ("pgd-ce/clean", "clean"), ("pgd-ce/robust", "robust"),
            ("pgd-margin/fused", "fused"), ("pgd-dlr/fused", "fused"), ("pgd-ce-restarts/fused", "fused"),
        }));
        var pgd = suite.Select(a => ((PgdAttack)a.Factory(0.1)).Options).ToList();
        Assert.That(pgd.Select(o => o.Loss), Is.EqualTo(new[]
        {
            AttackLoss.CrossEntropy, AttackLoss.CrossEntropy, AttackLoss.CrossEntropy, AttackLoss.Margin, AttackLoss.Dlr, AttackLoss.CrossEntropy,
        }));
        Assert.That(pgd.Select(o => o.Restarts), Is.EqualTo(new[] { 1, 1, 1, 1, 1, 3 }));
        Assert.That(pgd.All(o => o.Steps == 7 && o.Epsilon == 0.1 && Math.Abs(o.StepSize - 0.05) < 1e-15 && o.RandomStart && o.Norm == AttackNorm.LInf), Is.True);
        Assert.That(pgd.Select(o => o.Seed).Distinct().Count(), Is.EqualTo(6));

        // Two classes: no DLR (it needs 3); no branches: only the fused target.
        Assert.That(AdaptiveAttackSuite.Attacks(2, withBranches: false).Select(a => a.Name),
            Is.EqualTo(new[] { "pgd-ce/fused", "pgd-margin/fused", "pgd-ce-restarts/fused" }));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => AdaptiveAttackSuite.Attacks(3, true, new AdaptiveAttackOptions { Restarts = 0 }))!.ParamName,
            Is.EqualTo("Restarts"));
    }

    private static DefeatModel Model()
    {
        var backbone = new FakeBackbone(seed: 3);
        manual_seed(4);
        var model = DefeatModel.Create(backbone, ["cat", "dog", "red car", "bird"], promptOptions: new PromptLearnerOptions { ContextLength = 4, Seed = 1 },
            shieldOptions: new PerturbShieldOptions { HiddenDim = 4, CodebookSize = 16 });
        model.eval();
        return model;
    }

    [Test]
    public void TheRobustBranchHasInputGradientsThroughTheQuantizer()
    {
        // BPDA through the argmin: the straight-through estimator passes the gradient of the codeword to the encoder,
        // so the robust logits have a non-zero gradient with respect to the pixels (no masking by the quantizer).
        using var model = Model();
        using var scope = NewDisposeScope();
        var x = rand([2, 3, 12, 12], generator: new Generator(5)).requires_grad_(true);
        var robust = model.Logits(x, Branch.Robust);
        var gradient = torch.autograd.grad([robust[.., 0].sum()], [x])[0];
        Assert.That(gradient.abs().sum().item<float>(), Is.GreaterThan(0f));
        Assert.That(gradient.isfinite().all().item<bool>(), Is.True);
    }

    [Test]
    public void SuiteOnDefeatReportsEveryAttackAndTheWorstCaseIsNoBetterThanAny()
    {
        using var model = Model();
        var x = rand([4, 3, 12, 12], generator: new Generator(6));
        Tensor predicted;
        using (no_grad()) predicted = model.Logits(x).argmax(-1);
        using var set = new LabeledImages(x, predicted, ["cat", "dog", "red car", "bird"]);
        var attacks = AdaptiveAttackSuite.Attacks(model, new AdaptiveAttackOptions { Steps = 1, Restarts = 2, Seed = 1 });
        var report = new RobustnessEvaluator(new RobustnessEvaluatorOptions { Epsilons = [16.0 / 255], BatchSize = 4, Attacks = attacks })
            .Evaluate(AdaptiveAttackSuite.Subject(model), set);
        var r = report.ByEpsilon.Single();
        Assert.That(report.CleanAccuracy, Is.EqualTo(1.0)); // labels are the clean predictions
        Assert.That(report.BranchAccuracy.Keys, Is.EquivalentTo(new[] { "clean", "robust" }));
        Assert.That(r.RobustAccuracyByTarget.Keys, Is.EqualTo(attacks.Select(a => a.Name)));
        Assert.That(r.RobustAccuracy, Is.LessThanOrEqualTo(r.RobustAccuracyByTarget.Values.Min()));
        Assert.That(r.FlipRate, Is.Not.Null.And.InRange(0.0, 1.0));
        Assert.That(report.Codes, Is.Not.Null);
    }

    // A two-class linear model on 4 pixels: class 1 iff the mean pixel exceeds 0.5. Its input gradient has the same
    // sign on every pixel, so L-inf PGD from the clean image moves every pixel by min(eps, steps * stepSize) toward the
    // boundary: the optimal attack, whose outcome is known in closed form.
    private static Tensor MeanModel(Tensor images)
    {
        var mean = images.flatten(1).mean([1]);
        return stack([mean.RSub(0.5f).Times(10), mean.Minus(0.5f).Times(10)], 1);
    }

    private static (Tensor Images, Tensor Labels, double[] Distance) MeanData()
    {
        var g = new Generator(7);
        var low = rand([20, 1, 2, 2], generator: g).Times(0.3).Plus(0.1);   // pixels in [0.1, 0.4]: class 0
        var high = rand([20, 1, 2, 2], generator: g).Times(0.3).Plus(0.6);  // pixels in [0.6, 0.9]: class 1
        var images = cat([low, high]);
        var labels = cat([zeros(20, dtype: ScalarType.Int64), ones(20, dtype: ScalarType.Int64)]);
        // Pixels stay inside [0, 1] for every eps <= 0.5 (0.4 + 0.5 and 0.6 - 0.5), so clamping never bites.
        var distance = images.flatten(1).mean([1]).to_type(ScalarType.Float64).Minus(0.5).abs().data<double>().ToArray();
        return (images, labels, distance);
    }

    [Test]
    public void AccuracyFallsWithEpsilonToZeroAtHalfTheRangeAsTheClosedFormSays()
    {
        var (images, labels, distance) = MeanData();
        double[] epsilons = [0, 0.05, 0.1, 0.2, 0.3, 0.5];
        var accuracy = AttackSanityChecks.AccuracyByEpsilon(MeanModel, images, labels, epsilons,
            eps => new PgdAttack(new PgdOptions { Epsilon = eps, StepSize = eps / 4, Steps = 8, RandomStart = false }));
        for (int i = 0; i < epsilons.Length; i++)
        {
            // Survives iff its distance to the boundary exceeds eps (a float32 hair either way is avoided by the data).
            double expected = distance.Count(d => d > epsilons[i] + 1e-5) / (double)distance.Length;
            Assert.That(accuracy[i], Is.EqualTo(expected).Within(1e-12), $"eps {epsilons[i]}");
        }
        Assert.That(accuracy[0], Is.EqualTo(1.0));
        Assert.That(accuracy[^1], Is.EqualTo(0.0)); // below chance (0.5)
        Assert.That(AttackSanityChecks.Increases(accuracy), Is.Empty);
    }

    [Test]
    public void MoreStepsNeverHelpTheDefenderAndTheUnboundedAttackAlwaysSucceeds()
    {
        var (images, labels, distance) = MeanData();
        int[] steps = [0, 1, 2, 3, 4, 6, 8];
        var accuracy = AttackSanityChecks.AccuracyBySteps(MeanModel, images, labels, steps,
            s => new PgdAttack(new PgdOptions { Epsilon = 0.3, StepSize = 0.05, Steps = s, RandomStart = false }));
        for (int i = 0; i < steps.Length; i++)
        {
            double reach = Math.Min(0.3, steps[i] * 0.05);
            double expected = distance.Count(d => d > reach + 1e-5) / (double)distance.Length;
            Assert.That(accuracy[i], Is.EqualTo(expected).Within(1e-12), $"{steps[i]} steps");
        }
        Assert.That(AttackSanityChecks.Increases(accuracy), Is.Empty);

        // eps = 1 allows any image: every prediction can be flipped.
        var unbounded = AttackSanityChecks.AccuracyUnderAttack(MeanModel, images, labels,
            new PgdAttack(new PgdOptions { Epsilon = 1, StepSize = 0.25, Steps = 8, RandomStart = true, Seed = 3 }));
        Assert.That(unbounded, Is.EqualTo(0.0));
    }

    [Test]
    public void UnboundedAttackSucceedsOnDefeatThroughTheFusedLogits()
    {
        using var model = Model();
        var x = rand([8, 3, 12, 12], generator: new Generator(8));
        Tensor labels;
        using (no_grad()) labels = model.Logits(x).argmax(-1);
        var classifier = model.AsClassifier();
        var accuracy = AttackSanityChecks.AccuracyUnderAttack(classifier.call, x, labels,
            new PgdAttack(new PgdOptions { Epsilon = 1, StepSize = 0.2, Steps = 8, Loss = AttackLoss.Margin, Seed = 2 }));
        Assert.That(accuracy, Is.LessThanOrEqualTo(1.0 / 8));
    }

    [Test]
    public void IncreasesFindsWhereAStrongerAttackHelpedTheDefender()
    {
        Assert.That(AttackSanityChecks.Increases([0.9, 0.7, 0.75, 0.2, 0.2]), Is.EqualTo(new[] { 2 }));
        Assert.That(AttackSanityChecks.Increases([0.9, 0.7, 0.75, 0.2], tolerance: 0.05), Is.Empty);
        Assert.That(Assert.Throws<ArgumentException>(() => AttackSanityChecks.AccuracyUnderAttack(MeanModel, zeros(0, 1, 2, 2),
            zeros(0, dtype: ScalarType.Int64), new PgdAttack()))!.Message, Does.Contain("empty batch"));
    }
}
