using Defeat.Attacks;
using static TorchSharp.torch.nn;
using static Defeat.Tests.Attacks.AttackTestModels;

namespace Defeat.Tests.Attacks;

public class FabAttackTests
{
    // For a 2-class linear model the boundary is the hyperplane (w_t - w_y) . x + (b_t - b_y) = 0, and the smallest
    // perturbation that reaches it, with x + d kept in [0, 1], solves max over the budget of sum_i |w_i| move_i = margin,
    // where coordinate i can move at most room_i toward its bound in direction sign(w_i):
    //   L-inf radius r: move_i = min(r, room_i);   L2 multiplier u: move_i = min(u |w_i|, room_i), size = |move|_2.
    // Both reach functions increase, so bisection finds the answer without FAB's sorting.
    private static double MinimalSize(double[] w, double[] x, double margin, AttackNorm norm)
    {
        var room = w.Select((wi, i) => wi > 0 ? 1 - x[i] : x[i]).ToArray();
        double Reach(double s) => w.Select((wi, i) => Math.Abs(wi) * Math.Min(norm == AttackNorm.LInf ? s : s * Math.Abs(wi), room[i])).Sum();
        double lo = 0, hi = 1;
        while (Reach(hi) < margin) hi *= 2;
        for (var k = 0; k < 200; k++)
        {
            var mid = (lo + hi) / 2;
            if (Reach(mid) < margin) lo = mid; else hi = mid;
        }
        if (norm == AttackNorm.LInf) return hi;
        return Math.Sqrt(w.Select((wi, i) => Math.Pow(Math.Min(hi * Math.Abs(wi), room[i]), 2)).Sum());
    }

    private static (Linear Model, Tensor X, Tensor Y, double[] Minimal) TwoClassProblem(Tensor x, AttackNorm norm, int seed)
    {
        var model = new Linear(16, 2, seed, scale: 4);
        var y = model.call(x).argmax(1).detach();
        var w = model.Weight;
        var b = model.Bias;
        var minimal = new double[x.shape[0]];
        for (var i = 0; i < minimal.Length; i++)
        {
            var yi = y[i].item<long>();
            var diff = (w[1 - yi] - w[yi]).to_type(ScalarType.Float64).data<double>().ToArray();
            var xi = x[i].flatten().to_type(ScalarType.Float64).data<double>().ToArray();
            var margin = -(diff.Zip(xi, (a, c) => a * c).Sum() + (b[1 - yi] - b[yi]).item<float>());
            minimal[i] = MinimalSize(diff, xi, margin, norm);
        }
        return (model, x, y, minimal);
    }

    [TestCase(AttackNorm.LInf)]
    [TestCase(AttackNorm.L2)]
    public void FindsTheAnalyticMinimalPerturbationOfALinearClassifier(AttackNorm norm)
    {
        using var scope = NewDisposeScope();
        // Pixels in [0.3, 0.7], far from the box's faces: the minimum is the plain dual-norm distance margin / |w|_dual.
        var x = rand(new long[] { 6, 1, 4, 4 }, generator: new Generator(2)).Times(0.4).Plus(0.3);
        var (model, _, y, minimal) = TwoClassProblem(x, norm, seed: 1);
        var adv = new FabAttack(new FabOptions { Epsilon = 1.0, Norm = norm, Iterations = 50 }).Perturb(model, x, y);

        var sizes = Sizes(adv, x, norm);
        TestContext.Out.WriteLine($"{norm}: FAB / analytic = {string.Join(", ", sizes.Zip(minimal, (s, m) => (s / m).ToString("0.0000")))}");
        Assert.That(Accuracy(model.call, adv, y), Is.EqualTo(0.0));
        for (var i = 0; i < sizes.Length; i++)
        {
            Assert.That(minimal[i], Is.LessThan(0.3), "the box is not active in this test");
            Assert.That(sizes[i], Is.GreaterThanOrEqualTo(minimal[i] * (1 - 1e-4)), "no adversarial is smaller than the minimum");
            Assert.That(sizes[i], Is.LessThanOrEqualTo(minimal[i] * 1.01), $"image {i}");
        }
        // The direction is the dual of w: sign(w) for L-inf, w / |w| for L2.
        var w = model.Weight;
        var direction = stack(Enumerable.Range(0, 6).Select(i => w[1 - y[i].item<long>()] - w[y[i].item<long>()])).reshape(x.shape);
        var ideal = norm == AttackNorm.LInf ? direction.sign() : direction;
        var cosine = functional.cosine_similarity((adv - x).flatten(1), ideal.flatten(1), 1);
        Assert.That(cosine.min().item<float>(), Is.GreaterThan(0.99f));
    }

    [TestCase(AttackNorm.LInf)]
    [TestCase(AttackNorm.L2)]
    public void RespectsThePixelBoxAndStillFindsTheBoxConstrainedMinimum(AttackNorm norm)
    {
        using var scope = NewDisposeScope();
        // Pixels near 1 (half of them) and near 0: many coordinates cannot move their full share.
        var g = new Generator(12);
        var high = rand(new long[] { 6, 1, 4, 4 }, generator: g).Gt(0.5);
        var x = where(high, rand(new long[] { 6, 1, 4, 4 }, generator: g).Times(0.03).Plus(0.97), rand(new long[] { 6, 1, 4, 4 }, generator: g).Times(0.03));
        var (model, _, y, minimal) = TwoClassProblem(x, norm, seed: 11);
        var adv = new FabAttack(new FabOptions { Epsilon = 16.0, Norm = norm, Iterations = 100 }).Perturb(model, x, y);

        var sizes = Sizes(adv, x, norm);
        TestContext.Out.WriteLine($"{norm}: FAB / analytic = {string.Join(", ", sizes.Zip(minimal, (s, m) => (s / m).ToString("0.0000")))}");
        Assert.That(adv.min().item<float>(), Is.GreaterThanOrEqualTo(0f));
        Assert.That(adv.max().item<float>(), Is.LessThanOrEqualTo(1f));
        Assert.That(Accuracy(model.call, adv, y), Is.EqualTo(0.0));
        for (var i = 0; i < sizes.Length; i++)
        {
            Assert.That(sizes[i], Is.GreaterThanOrEqualTo(minimal[i] * (1 - 1e-4)), $"image {i}");
            Assert.That(sizes[i], Is.LessThanOrEqualTo(minimal[i] * 1.02), $"image {i}");
        }
    }

    [Test]
    public void ReturnsTheCleanImageWhenTheMinimumLiesOutsideTheBall()
    {
        using var scope = NewDisposeScope();
        var x = rand(new long[] { 6, 1, 4, 4 }, generator: new Generator(22)).Times(0.4).Plus(0.3);
        var (model, _, y, minimal) = TwoClassProblem(x, AttackNorm.LInf, seed: 21);
        var eps = minimal.Min() * 0.9;
        var adv = new FabAttack(new FabOptions { Epsilon = eps, Iterations = 30 }).Perturb(model, x, y);
        Assert.That(adv.equal(x).all().item<bool>(), Is.True);
        // At a radius between the smallest and largest minimum, exactly the images whose minimum fits are fooled.
        var middle = (minimal.Min() + minimal.Max()) / 2;
        var some = new FabAttack(new FabOptions { Epsilon = middle, Iterations = 30 }).Perturb(model, x, y);
        var fooled = model.call(some).argmax(1).ne(y).data<bool>().ToArray();
        Assert.That(fooled, Is.EqualTo(minimal.Select(m => m * 1.01 < middle).ToArray()));
    }

    [Test]
    public void FabTFoolsAMultiClassLinearModelAndUsesFewerTargetsWithFewerClasses()
    {
        using var scope = NewDisposeScope();
        var model = new Linear(64, 10, seed: 31);
        var x = rand(new long[] { 8, 1, 8, 8 }, generator: new Generator(32));
        var y = model.call(x).argmax(1).detach();
        var adv = new FabAttack(new FabOptions { Epsilon = 0.3, Iterations = 20 }).Perturb(model, x, y);
        Assert.That(Accuracy(model.call, adv, y), Is.EqualTo(0.0));
        Assert.That(Sizes(adv, x, AttackNorm.LInf), Has.All.LessThanOrEqualTo(0.3));

        // Radius 0 fools nobody: 1 clean call, then per target (3 classes: 2 targets) 2 calls per iteration
        // (gradient, then the prediction at the new point) and one check of the run's result.
        var three = new Linear(64, 3, seed: 33);
        var y3 = three.call(x).argmax(1).detach();
        var recorder = new Recorder(three.call);
        new FabAttack(new FabOptions { Epsilon = 0, Iterations = 4 }).Perturb(recorder.Call, x, y3);
        Assert.That(recorder.Calls, Is.EqualTo(1 + 2 * (2 * 4 + 1)));
        recorder.Clear();
    }

    [Test]
    public void OptionsAreValidated()
    {
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new FabAttack(new FabOptions { Eta = 0.5 }))!.ParamName, Is.EqualTo("Eta"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new FabAttack(new FabOptions { Beta = 0 }))!.ParamName, Is.EqualTo("Beta"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new FabAttack(new FabOptions { AlphaMax = 2 }))!.ParamName, Is.EqualTo("AlphaMax"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new FabAttack(new FabOptions { Restarts = 0 }))!.ParamName, Is.EqualTo("Restarts"));
    }
}
