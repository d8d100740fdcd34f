using Defeat.Attacks;
using static Defeat.Tests.Attacks.AttackTestModels;

namespace Defeat.Tests.Attacks;

public class ApgdAttackTests
{
    // The published rule (Croce and Hein 2020, Sec. 3.2): p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06),
    // checkpoints at p_j * N while p_j <= 1. Worked in exact decimals.
    private static List<int> PublishedCheckpoints(int iterations)
    {
        var list = new List<int>();
        decimal before = 0m, p = 0.22m;
        while (p <= 1m)
        {
            list.Add((int)(p * iterations));
            (before, p) = (p, p + Math.Max(p - before - 0.03m, 0.06m));
        }
        return list;
    }

    [Test]
    public void CheckpointsFollowThePublishedRule()
    {
        // By hand: intervals 0.22, 0.19, 0.16, 0.13, 0.10, 0.07, then 0.06 (0.04 is below the floor) twice; 1.05 > 1 ends it.
        Assert.That(PublishedCheckpoints(100), Is.EqualTo(new[] { 22, 41, 57, 70, 80, 87, 93, 99 }));
        Assert.That(ApgdAttack.Checkpoints(100), Is.EqualTo(PublishedCheckpoints(100)));
        Assert.That(ApgdAttack.Checkpoints(1000), Is.EqualTo(PublishedCheckpoints(1000)));
        Assert.That(ApgdAttack.Checkpoints(200), Is.EqualTo(PublishedCheckpoints(200)));
    }

    [Test]
    public void CheckpointsRoundToWholeIterationsAsTheReferenceDoes()
    {
        // N = 50: first interval floor(11) = 11, shrink floor(1.5) = 1, floor floor(3) = 3:
        // intervals 11, 10, 9, 8, 7 give 11, 21, 30, 38, 45; the next (6) would end at 51 > 50.
        Assert.That(ApgdAttack.Checkpoints(50), Is.EqualTo(new[] { 11, 21, 30, 38, 45 }));
        // N = 10: intervals max(floor(2.2), 1) = 2 then 1 (shrink and floor are both max(0, 1) = 1).
        Assert.That(ApgdAttack.Checkpoints(10), Is.EqualTo(new[] { 2, 3, 4, 5, 6, 7, 8, 9, 10 }));
        Assert.That(ApgdAttack.Checkpoints(1), Is.EqualTo(new[] { 1 }));
        Assert.That(ApgdAttack.Checkpoints(0), Is.Empty);
    }

    [Test]
    public void DlrLossesMatchHandComputation()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(new float[] { 1, 3, 2, 0.5f, -1, 2, 0, 5, 1, 4 }).reshape(2, 5);
        var labels = tensor(new long[] { 1, 0 });
        var targets = tensor(new long[] { 4, 3 });

        // Row 0 sorted 3, 2, 1, 0.5, -1; y = 1 is on top: untargeted -(3 - 2) / (3 - 1) = -0.5;
        //   targeted to 4: (-1 - 3) / (3 - (1 + 0.5) / 2) = -4 / 2.25.
        // Row 1 sorted 5, 4, 2, 1, 0; y = 0 (z = 2) is not on top: untargeted -(2 - 5) / (5 - 2) = 1;
        //   targeted to 3: (1 - 2) / (5 - (2 + 1) / 2) = -1 / 3.5.
        Assert.That(AttackObjectives.PerSample(logits, labels, AttackLoss.Dlr, targeted: false).data<float>().ToArray(),
            Is.EqualTo(new[] { -0.5, 1.0 }).Within(1e-6));
        Assert.That(AttackObjectives.TargetedDlr(logits, labels, targets).data<float>().ToArray(),
            Is.EqualTo(new[] { -4 / 2.25, -1 / 3.5 }).Within(1e-6));
        // Shift and scale invariance, the point of DLR.
        Assert.That(AttackObjectives.TargetedDlr(logits.Times(7).Plus(3), labels, targets).data<float>().ToArray(),
            Is.EqualTo(new[] { -4 / 2.25, -1 / 3.5 }).Within(1e-5));
        var e = Assert.Throws<ArgumentException>(() => AttackObjectives.TargetedDlr(zeros(2, 3), labels, targets));
        Assert.That(e!.Message, Does.Contain("at least 4 classes"));
    }

    // logits = (0, -k |x - c|^2): the cross-entropy of class 0 is softplus(-k |x - c|^2), which rises as x nears c.
    // Maximising it over the ball is the convex problem min |x - c| over the ball and the box; its optimum is the
    // projection of c: clamp(c, x0 - eps, x0 + eps) for L-inf, x0 + (c - x0) min(1, eps / |c - x0|) for L2.
    private static Tensor Bowl(Tensor x, Tensor c) =>
        stack(new[] { zeros(x.shape[0], dtype: x.dtype), -(x - c).Square().flatten(1).sum(1) }, 1);

    [TestCase(AttackNorm.LInf)]
    [TestCase(AttackNorm.L2)]
    public void ReachesTheOptimumOfASmoothConvexProblem(AttackNorm norm)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var x0 = rand(new long[] { 4, 1, 4, 4 }, generator: g).Times(0.4).Plus(0.3);
        var eps = norm == AttackNorm.LInf ? 0.05 : 0.2;
        // Centres partly inside the L-inf ball (those coordinates have an interior optimum), partly outside.
        var c = x0.Plus(rand(x0.shape, generator: g).Times(2).Minus(1).Times(0.1));
        var labels = zeros(4, dtype: ScalarType.Int64);
        var attack = new ApgdAttack(new ApgdOptions { Epsilon = eps, Norm = norm, Iterations = 100, Seed = 1 });

        var adv = attack.Perturb(x => Bowl(x, c), x0, labels);

        var expected = norm == AttackNorm.LInf
            ? x0.Plus((c - x0).Clamp(-eps, eps))
            : x0.Plus((c - x0) * (c - x0).flatten(1).norm(1).RDiv(eps).ClampMax(1).reshape(4, 1, 1, 1));
        var error = (adv - expected).abs().max().item<float>();
        TestContext.Out.WriteLine($"{norm}: largest coordinate error {error:E2} (eps {eps})");
        Assert.That(error, Is.LessThan(eps / 100));
        Assert.That(Sizes(adv, x0, norm), Has.All.LessThanOrEqualTo(eps));
    }

    [Test]
    public void FixedStepPgdStaysFartherFromThatOptimumThanApgd()
    {
        // The point of APGD's schedule: a fixed step of 2 eps / 10 oscillates around an interior optimum.
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var x0 = rand(new long[] { 4, 1, 4, 4 }, generator: g).Times(0.4).Plus(0.3);
        const double eps = 0.05;
        var c = x0.Plus(rand(x0.shape, generator: g).Times(2).Minus(1).Times(0.1));
        var labels = zeros(4, dtype: ScalarType.Int64);
        var expected = x0.Plus((c - x0).Clamp(-eps, eps));
        var apgd = new ApgdAttack(new ApgdOptions { Epsilon = eps, Iterations = 100 }).Perturb(x => Bowl(x, c), x0, labels);
        var pgd = new PgdAttack(new PgdOptions { Epsilon = eps, StepSize = eps / 5, Steps = 100 }).Perturb(x => Bowl(x, c), x0, labels);
        Assert.That((apgd - expected).abs().max().item<float>(), Is.LessThan((pgd - expected).abs().max().item<float>() / 4));
    }

    [TestCase(AttackNorm.LInf, 0.3)]
    [TestCase(AttackNorm.L2, 2.0)]
    public void FoolsAnUndefendedLinearModelInsideTheBall(AttackNorm norm, double eps)
    {
        using var scope = NewDisposeScope();
        var model = new Linear(64, 10, seed: 5);
        var x = rand(new long[] { 16, 1, 8, 8 }, generator: new Generator(6));
        var y = model.call(x).argmax(1).detach();
        foreach (var loss in new[] { AttackLoss.CrossEntropy, AttackLoss.Dlr })
        {
            var adv = new ApgdAttack(new ApgdOptions { Epsilon = eps, Norm = norm, Iterations = 20, Loss = loss, Seed = 2 }).Perturb(model, x, y);
            Assert.That(Accuracy(model.call, adv, y), Is.EqualTo(0.0), $"{loss}");
            Assert.That(Sizes(adv, x, norm), Has.All.LessThanOrEqualTo(eps));
            Assert.That(adv.min().item<float>(), Is.GreaterThanOrEqualTo(0f));
            Assert.That(adv.max().item<float>(), Is.LessThanOrEqualTo(1f));
        }
    }

    [Test]
    public void TargetedReachesTheTargetClass()
    {
        using var scope = NewDisposeScope();
        var model = new Linear(64, 5, seed: 15);
        var x = rand(new long[] { 8, 1, 8, 8 }, generator: new Generator(16));
        using var s = 5.ToScalar();
        var target = model.call(x).argmax(1).detach().Plus(2) % s;
        var adv = new ApgdAttack(new ApgdOptions { Epsilon = 0.5, Iterations = 30, Targeted = true }).Perturb(model, x, target);
        Assert.That(model.call(adv).argmax(1).eq(target).all().item<bool>(), Is.True);
    }

    [Test]
    public void RestartsAndQueriesRunOnlyOnImagesStillStanding()
    {
        using var scope = NewDisposeScope();
        var model = new Linear(64, 10, seed: 25);
        var x = rand(new long[] { 6, 1, 8, 8 }, generator: new Generator(26));
        var y = model.call(x).argmax(1).detach();
        using var s = 10.ToScalar();
        y[0] = y[0].Plus(1) % s; // the model already gets image 0 wrong

        // Radius 0: nothing can change, so every restart runs, on the 5 images the model gets right:
        // 1 clean call, then per restart a gradient at the start and one per iteration.
        var recorder = new Recorder(model.call);
        var still = new ApgdAttack(new ApgdOptions { Epsilon = 0, Iterations = 7, Restarts = 3 }).Perturb(recorder.Call, x, y);
        Assert.That(recorder.Calls, Is.EqualTo(1 + 3 * (7 + 1)));
        Assert.That(recorder.Batches.Skip(1).Select(b => b.shape[0]), Has.All.EqualTo(5));
        Assert.That(still.equal(x).all().item<bool>(), Is.True);
        recorder.Clear();

        // A radius that fools every image in the first run: the later restarts find nobody to attack.
        var adv = new ApgdAttack(new ApgdOptions { Epsilon = 0.5, Iterations = 7, Restarts = 3 }).Perturb(recorder.Call, x, y);
        Assert.That(recorder.Calls, Is.EqualTo(1 + 7 + 1));
        Assert.That(adv[0].equal(x[0]).all().item<bool>(), Is.True, "an image already misclassified is returned unchanged");
        recorder.Clear();
    }

    [Test]
    public void EotAveragesTheConfiguredNumberOfGradients()
    {
        using var scope = NewDisposeScope();
        var model = new Linear(64, 10, seed: 35);
        var x = rand(new long[] { 3, 1, 8, 8 }, generator: new Generator(36));
        var y = model.call(x).argmax(1).detach();
        var recorder = new Recorder(model.call);
        new ApgdAttack(new ApgdOptions { Epsilon = 0, Iterations = 4, EotIterations = 5 }).Perturb(recorder.Call, x, y);
        Assert.That(recorder.Calls, Is.EqualTo(1 + 5 * (4 + 1)));
        recorder.Clear();
    }

    [Test]
    public void ApgdTTriesTheTopOtherClassesAsTargetsAndNeedsFourClasses()
    {
        using var scope = NewDisposeScope();
        var x = rand(new long[] { 4, 1, 8, 8 }, generator: new Generator(46));
        foreach (var (classes, expectedTargets) in new[] { (5, 4), (12, 9) })
        {
            var model = new Linear(64, classes, seed: 45);
            var y = model.call(x).argmax(1).detach();
            var recorder = new Recorder(model.call);
            // Radius 0 fools nobody, so every target gets its full run: 1 clean call, then (1 + N) per target.
            new ApgdTargetedAttack(new ApgdTargetedOptions { Epsilon = 0, Iterations = 3 }).Perturb(recorder.Call, x, y);
            Assert.That(recorder.Calls, Is.EqualTo(1 + expectedTargets * (1 + 3)), $"{classes} classes");
            recorder.Clear();
        }

        var three = new Linear(64, 3, seed: 47);
        var e = Assert.Throws<ArgumentException>(() =>
            new ApgdTargetedAttack().Perturb(three, x, zeros(4, dtype: ScalarType.Int64)));
        Assert.That(e!.ParamName, Is.EqualTo("model"));
        Assert.That(e.Message, Does.Contain("at least 4 classes").And.Contain("3"));
    }

    [Test]
    public void ApgdTFoolsAnUndefendedLinearModel()
    {
        using var scope = NewDisposeScope();
        var model = new Linear(64, 10, seed: 55);
        var x = rand(new long[] { 12, 1, 8, 8 }, generator: new Generator(56));
        var y = model.call(x).argmax(1).detach();
        var adv = new ApgdTargetedAttack(new ApgdTargetedOptions { Epsilon = 0.3, Iterations = 20, TargetClasses = 3 }).Perturb(model, x, y);
        Assert.That(Accuracy(model.call, adv, y), Is.EqualTo(0.0));
        Assert.That(Sizes(adv, x, AttackNorm.LInf), Has.All.LessThanOrEqualTo(0.3));
    }

    [Test]
    public void SameSeedSameResult()
    {
        using var scope = NewDisposeScope();
        var model = SmallCnn(1, 10, seed: 65);
        var x = rand(new long[] { 6, 1, 8, 8 }, generator: new Generator(66));
        var y = model.call(x).argmax(1).detach();
        var options = new ApgdOptions { Epsilon = 0.5, Norm = AttackNorm.L2, Iterations = 3, Restarts = 2, Seed = 4 };
        var a = new ApgdAttack(options).Perturb(model, x, y);
        var b = new ApgdAttack(options).Perturb(model, x, y);
        var c = new ApgdAttack(options with { Seed = 5 }).Perturb(model, x, y);
        Assert.That(a.equal(b).all().item<bool>(), Is.True);
        Assert.That(a.equal(c).all().item<bool>(), Is.False);
    }

    [Test]
    public void OptionsAreValidated()
    {
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new ApgdAttack(new ApgdOptions { Iterations = -1 }))!.ParamName, Is.EqualTo("Iterations"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new ApgdAttack(new ApgdOptions { Rho = 1.5 }))!.ParamName, Is.EqualTo("Rho"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new ApgdAttack(new ApgdOptions { Momentum = 0 }))!.ParamName, Is.EqualTo("Momentum"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new ApgdAttack(new ApgdOptions { Epsilon = double.NaN }))!.ParamName, Is.EqualTo("Epsilon"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new ApgdTargetedAttack(new ApgdTargetedOptions { TargetClasses = 0 }))!.ParamName, Is.EqualTo("TargetClasses"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new ApgdTargetedAttack(new ApgdTargetedOptions { EotIterations = 0 }))!.ParamName, Is.EqualTo("EotIterations"));
    }

    [Test]
    public void BadInputIsRefusedWithTheArgumentNamed()
    {
        using var scope = NewDisposeScope();
        var model = new Linear(64, 10, seed: 75);
        var x = rand(new long[] { 2, 1, 8, 8 }, generator: new Generator(76));
        var attack = new ApgdAttack();
        Assert.That(Assert.Throws<ArgumentException>(() => attack.Perturb(model, x, tensor(new long[] { 0 })))!.ParamName, Is.EqualTo("labels"));
        Assert.That(Assert.Throws<ArgumentException>(() => attack.Perturb(model, x.Times(2), tensor(new long[] { 0, 1 })))!.ParamName, Is.EqualTo("images"));
        Assert.That(Assert.Throws<ArgumentException>(() => attack.Perturb(model, x, tensor(new long[] { 0, 10 })))!.ParamName, Is.EqualTo("labels"));
        Assert.That(attack.Perturb(model, zeros(0, 1, 8, 8), zeros(0, dtype: ScalarType.Int64)).shape, Is.EqualTo(new long[] { 0, 1, 8, 8 }));
    }
}
