using Defeat.Attacks;
using Defeat.Data;
using Defeat.Evaluation;

namespace Defeat.Tests.Evaluation;

public class RobustnessEvaluatorTests
{
    // Images are 1x1x2 pixels; the "model" predicts class 1 when pixel 0 > 0.5, and has a second
    // branch that looks at pixel 1 instead. Labels are 1 for all 10 images, all clean-correct.
    private static LabeledImages Set()
    {
        var x = ScalarOps.Full([10, 1, 1, 2], 0.9f);
        return new LabeledImages(x, ones(10, dtype: ScalarType.Int64), ["no", "yes"]);
    }

    private static Tensor Logits(Tensor images, int pixel)
    {
        var p = images.flatten(1)[.., pixel];
        return stack([p.RSub(0.5f), p.Minus(0.5f)], 1);
    }

    /// <summary>An attack that darkens the given pixel of the images whose batch positions are listed.</summary>
    private sealed class Darken(int pixel, params long[] rows) : IAdversarialAttack
    {
        public int Calls { get; private set; }

        public Tensor Perturb(Func<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
        {
            Calls++;
            var result = images.clone();
            foreach (var r in rows) result[r, 0, 0, pixel] = tensor(0.1f);
            return result;
        }
    }

    [Test]
    public void RobustAccuracyIsThePerSampleWorstCaseOverTargets()
    {
        using var set = Set();
        Func<Tensor, Tensor> fused = x => Logits(x, 0).Plus(Logits(x, 1));
        var subject = new EvaluationSubject("toy", fused,
            attackTargets: new Dictionary<string, Func<Tensor, Tensor>> { ["fused"] = fused, ["branch"] = x => Logits(x, 1) },
            branches: new Dictionary<string, Func<Tensor, Tensor>> { ["pixel0"] = x => Logits(x, 0) });

        // Attack "fused" (first target) breaks images 0 and 1 via pixel 0 (fused logit 1: -0.4 + 0.4 = 0 -> ties go to class 0);
        // attack "branch" breaks images 1 and 2 via pixel 1. Worst case: {0, 1, 2} broken -> 7/10.
        var attacks = new Queue<IAdversarialAttack>([new Darken(0, 0, 1), new Darken(1, 1, 2)]);
        var targetOrder = new List<string>();
        var evaluator = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = [4.0 / 255],
            BatchSize = 4, // three batches: 4, 4, 2
            AttackFactory = _ => new PerTarget(attacks),
        });
        var report = evaluator.Evaluate(subject, set);

        Assert.That(report.CleanAccuracy, Is.EqualTo(1.0));
        Assert.That(report.BranchAccuracy["pixel0"], Is.EqualTo(1.0));
        var r = report.ByEpsilon.Single();
        Assert.That(r.RobustAccuracyByTarget["fused"], Is.EqualTo(0.8));
        Assert.That(r.RobustAccuracyByTarget["branch"], Is.EqualTo(0.8));
        Assert.That(r.RobustAccuracy, Is.EqualTo(0.7));
        Assert.That(r.HarmonicMean, Is.EqualTo(2 * 1.0 * 0.7 / 1.7).Within(1e-12));
        Assert.That(r.FlipRate, Is.Null);
        Assert.That(report.Codes, Is.Null);
        // Per image, in test-set order: the three images broken in the first batch, every clean prediction right.
        Assert.That(r.RobustCorrect, Is.EqualTo(new[] { false, false, false, true, true, true, true, true, true, true }));
        Assert.That(report.CleanCorrect, Is.EqualTo(Enumerable.Repeat(true, 10)));
    }

    /// <summary>Hands out one scripted attack per target, in the order targets are attacked, for every batch.</summary>
    private sealed class PerTarget(Queue<IAdversarialAttack> scripts) : IAdversarialAttack
    {
        private readonly IAdversarialAttack[] _byTarget = scripts.ToArray();
        private int _call;

        public Tensor Perturb(Func<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
        {
            var attack = _byTarget[_call++ % _byTarget.Length];
            // Rows are batch positions of the first batch only; later batches stay clean.
            return _call <= _byTarget.Length ? attack.Perturb(model, images, labels, cancellationToken) : images.clone();
        }
    }

    [Test]
    public void FlipRateAndCodeUsageCountCodesThatChange()
    {
        using var set = Set();
        // Codes: one per pixel, 1 when the pixel is bright, else 0 (codebook of 3 so one code is never used).
        Func<Tensor, Tensor> codes = x => x.flatten(1).Gt(0.5).to_type(ScalarType.Int64);
        var subject = new EvaluationSubject("coded", x => Logits(x, 0), codeIndices: codes, codebookSize: 3);
        var report = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = [1.0 / 255],
            BatchSize = 10,
            AttackFactory = _ => new Darken(1, 0, 5, 9),
        }).Evaluate(subject, set);

        // 3 of the 20 pixel codes flip; the prediction reads pixel 0, so all stay right.
        Assert.That(report.ByEpsilon[0].FlipRate, Is.EqualTo(3.0 / 20).Within(1e-12));
        Assert.That(report.ByEpsilon[0].RobustAccuracy, Is.EqualTo(1.0));
        // All 20 clean codes are 1: one code used, perplexity exp(0) = 1.
        Assert.That(report.Codes, Is.EqualTo(new CodeUsage(1, 1.0)));
    }

    [Test]
    public void RealPgdOnALinearModelMatchesTheClosedForm()
    {
        // Logit margin of class 1 over class 0 is (p0 - 0.5) * 2: an L-inf attack of radius eps lowers
        // pixel 0 by eps, so an image survives iff p0 - eps > 0.5. With p0 = 0.5 + k/255 (k = 1..10)
        // and eps = 4/255, images k = 5..10 survive: 6 of 10 (k = 4 ties, and argmax of a tie is class 0).
        var p0 = tensor(Enumerable.Range(1, 10).Select(k => 0.5f + k / 255f).ToArray());
        var x = stack([p0, ScalarOps.Full(10, 0.5f)], 1).reshape(10, 1, 1, 2);
        using var set = new LabeledImages(x, ones(10, dtype: ScalarType.Int64), ["no", "yes"]);
        Func<Tensor, Tensor> model = images => { var p = images.flatten(1)[.., 0]; return stack([p.RSub(0.5f), p.Minus(0.5f)], 1); };
        var report = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = [4.0 / 255],
            AttackFactory = eps => new PgdAttack(new PgdOptions { Epsilon = eps, StepSize = eps / 4, Steps = 20, RandomStart = false }),
        }).Evaluate(new EvaluationSubject("linear", model), set);
        Assert.That(report.ByEpsilon[0].RobustAccuracy, Is.EqualTo(0.6));
    }

    [Test]
    public void BadArgumentsAreNamed()
    {
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new RobustnessEvaluator(new RobustnessEvaluatorOptions { Epsilons = [2.0] }))!.ParamName,
            Is.EqualTo("Epsilons"));
        Assert.That(Assert.Throws<ArgumentException>(() => new RobustnessEvaluator(new RobustnessEvaluatorOptions { Epsilons = [] }))!.ParamName,
            Is.EqualTo("Epsilons"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new EvaluationSubject("s", x => x, codeIndices: x => x))!.ParamName,
            Is.EqualTo("codebookSize"));
        Assert.That(RobustnessReport.Harmonic(0, 0), Is.EqualTo(0));
    }
}
