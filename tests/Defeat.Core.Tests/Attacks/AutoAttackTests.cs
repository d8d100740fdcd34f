using Defeat.Attacks;
using static TorchSharp.torch.nn;
using static Defeat.Tests.Attacks.AttackTestModels;

namespace Defeat.Tests.Attacks;

public class AutoAttackTests
{
    // Small budgets so that the whole standard suite runs in seconds.
    private static AutoAttackOptions Small(double eps, AutoAttackVersion version = AutoAttackVersion.Standard) => new()
    {
        Epsilon = eps, Version = version, Iterations = 5, TargetClasses = 3, SquareQueries = 40, EotIterations = 2, BatchSize = 4, Seed = 3,
    };

    /// <summary>Records what each stage is given and what the model sees while the stage runs.</summary>
    private sealed class Spy : IAdversarialAttack
    {
        private readonly IAdversarialAttack _inner;

        public Spy(IAdversarialAttack inner) => _inner = inner;

        public List<Tensor> Images { get; } = new();

        public List<Tensor> Queries { get; } = new();

        public List<(Tensor Output, Tensor Labels)> Outputs { get; } = new();

        public Tensor Perturb(Func<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
        {
            Images.Add(images.detach().clone().DetachFromDisposeScope());
            var output = _inner.Perturb(x =>
            {
                Queries.Add(x.detach().clone().DetachFromDisposeScope());
                return model(x);
            }, images, labels, cancellationToken);
            Outputs.Add((output.clone().DetachFromDisposeScope(), labels.clone().DetachFromDisposeScope()));
            return output;
        }

        public void Dispose()
        {
            foreach (var t in Images.Concat(Queries).Concat(Outputs.SelectMany(o => new[] { o.Output, o.Labels }))) t.Dispose();
        }
    }

    private static (Module<Tensor, Tensor> Model, Tensor X, Tensor Y) Problem(int n = 14, int classes = 6, int seed = 1)
    {
        var model = SmallCnn(1, classes, seed);
        var x = rand(new long[] { n, 1, 8, 8 }, generator: new Generator((ulong)seed + 100));
        var y = model.call(x).argmax(1).detach();
        using var s = classes.ToScalar();
        // Two images the model gets wrong: they must never be attacked.
        y[0] = y[0].Plus(1) % s;
        y[1] = y[1].Plus(1) % s;
        return (model, x, y);
    }

    [Test]
    public void EachAttackRunsOnlyOnTheImagesStillRobust()
    {
        using var scope = NewDisposeScope();
        var (model, x, y) = Problem();
        const double eps = 0.03;
        var spies = AutoAttack.Stages(Small(eps)).Select(s => (s, new Spy(s.Attack))).ToList();
        var attack = new AutoAttack(Small(eps) with
        {
            Version = AutoAttackVersion.Custom,
            Stages = spies.Select(p => new AutoAttackStage(p.s.Name, p.Item2, p.s.MinimumClasses)).ToList(),
        });

        using var result = attack.Run(model, x, y);

        // Independently: which images are right before any attack, and which each stage's outputs fool.
        var robust = model.call(x).argmax(1).eq(y).data<bool>().ToArray();
        Assert.That(robust[0] || robust[1], Is.False);
        var pairwise = (x.flatten(1).unsqueeze(1) - x.flatten(1).unsqueeze(0)).abs().amax(new long[] { 2 }).Plus(eye(14).Times(10));
        var separation = pairwise.min().item<float>();
        for (var k = 0; k < spies.Count; k++)
        {
            var (stage, spy) = spies[k];
            var given = spy.Images.SelectMany(b => Nearest(b, x).Index).ToArray();
            Assert.That(given, Is.EquivalentTo(Enumerable.Range(0, 14).Where(i => robust[i])), $"{stage.Name} gets the survivors");
            Assert.That(spy.Images.Select(b => b.shape[0]), Has.All.LessThanOrEqualTo(4), "in batches of BatchSize");
            // Every query of the stage is near a survivor, so no broken image is attacked again. The queries of APGD and
            // Square stay in the ball; FAB, a minimum-norm attack, may query beyond it (it only accepts results inside),
            // but always far closer to its own image than to any other.
            foreach (var q in spy.Queries)
            {
                var (index, distance) = Nearest(q, x);
                Assert.That(distance, Has.All.LessThan(separation / 2));
                Assert.That(index.All(i => robust[i]), Is.True, $"{stage.Name} queried a broken image");
                if (stage.Name != "fab-t") Assert.That(distance, Has.All.LessThanOrEqualTo(eps * (1 + 1e-6)));
            }
            TestContext.Out.WriteLine($"{stage.Name}: {given.Length} attacked, {spy.Queries.Count} model calls, {spy.Queries.Sum(q => q.shape[0])} image queries");
            var broken = 0;
            for (var b = 0; b < spy.Images.Count; b++)
            {
                var (output, labels) = spy.Outputs[b];
                var fooled = model.call(output).argmax(1).ne(labels).data<bool>().ToArray();
                var index = Nearest(spy.Images[b], x).Index;
                for (var r = 0; r < index.Length; r++)
                    if (fooled[r]) { robust[index[r]] = false; broken++; }
            }
            Assert.That(result.Report.Stages[k].Attacked, Is.EqualTo(given.Length));
            Assert.That(result.Report.Stages[k].Broken, Is.EqualTo(broken), stage.Name);
            Assert.That(result.Report.Stages[k].RobustAccuracy, Is.EqualTo(robust.Count(r => r) / 14.0).Within(1e-12), stage.Name);
        }
        Assert.That(result.Robust.data<bool>().ToArray(), Is.EqualTo(robust));
        Assert.That(result.Report.Stages.Sum(st => st.Broken), Is.GreaterThan(0), "the radius breaks some images");
        Assert.That(robust.Count(r => r), Is.GreaterThan(0), "and leaves some standing");
        foreach (var (_, spy) in spies) spy.Dispose();
    }

    [Test]
    public void ReportIsConsistentWithTheReturnedImages()
    {
        using var scope = NewDisposeScope();
        var (model, x, y) = Problem(seed: 2);
        const double eps = 0.05;
        using var result = new AutoAttack(Small(eps)).Run(model, x, y);
        var report = result.Report;
        TestContext.Out.WriteLine(report);

        Assert.That(report.Stages.Select(s => s.Name), Is.EqualTo(new[] { "apgd-ce", "apgd-t", "fab-t", "square" }));
        Assert.That(report.Images, Is.EqualTo(14));
        Assert.That(report.CleanAccuracy, Is.EqualTo(Accuracy(model.call, x, y)).Within(1e-12));
        // Robust accuracy falls stage by stage by the images each broke, and ends at the last stage's value.
        var before = report.CleanAccuracy;
        foreach (var s in report.Stages)
        {
            Assert.That(s.RobustAccuracy, Is.EqualTo(before - s.Broken / 14.0).Within(1e-12), s.Name);
            Assert.That(s.Attacked, Is.EqualTo((long)Math.Round(before * 14)), s.Name);
            before = s.RobustAccuracy;
        }
        Assert.That(report.RobustAccuracy, Is.EqualTo(before));
        Assert.That(report.Stages.Sum(s => s.Broken), Is.GreaterThan(0), "the radius is large enough to break something");
        // The returned images: in the ball, and the model is exactly as accurate on them as the report says.
        Assert.That(Sizes(result.Adversarial, x, AttackNorm.LInf), Has.All.LessThanOrEqualTo(eps));
        Assert.That(Accuracy(model.call, result.Adversarial, y), Is.EqualTo(report.RobustAccuracy).Within(1e-12));
        Assert.That(result.Robust.data<bool>().ToArray(), Is.EqualTo(model.call(result.Adversarial).argmax(1).eq(y).data<bool>().ToArray()));
        // Robust images are returned clean.
        var robust = result.Robust.nonzero().squeeze(1);
        Assert.That(result.Adversarial.index_select(0, robust).equal(x.index_select(0, robust)).all().item<bool>(), Is.True);
        // Perturb gives the same images.
        var again = new AutoAttack(Small(eps)).Perturb(model, x, y);
        Assert.That(again.equal(result.Adversarial).all().item<bool>(), Is.True);
    }

    [Test]
    public void SameSeedSameResult()
    {
        using var scope = NewDisposeScope();
        var (model, x, y) = Problem(seed: 3);
        using var a = new AutoAttack(Small(0.04)).Run(model, x, y);
        using var b = new AutoAttack(Small(0.04)).Run(model, x, y);
        Assert.That(a.Adversarial.equal(b.Adversarial).all().item<bool>(), Is.True);
        Assert.That(a.Report.Stages.Select(s => (s.Name, s.Attacked, s.Broken, s.RobustAccuracy)),
            Is.EqualTo(b.Report.Stages.Select(s => (s.Name, s.Attacked, s.Broken, s.RobustAccuracy))));
    }

    [Test]
    public void RandVersionRunsApgdCeAndDlrWithExpectationOverTransformation()
    {
        using var scope = NewDisposeScope();
        var stages = AutoAttack.Stages(new AutoAttackOptions { Version = AutoAttackVersion.Rand });
        Assert.That(stages.Select(s => s.Name), Is.EqualTo(new[] { "apgd-ce", "apgd-dlr" }));
        var ce = (ApgdAttack)stages[0].Attack;
        var dlr = (ApgdAttack)stages[1].Attack;
        Assert.That((ce.Options.Loss, ce.Options.EotIterations, ce.Options.Restarts, ce.Options.Iterations), Is.EqualTo((AttackLoss.CrossEntropy, 20, 1, 100)));
        Assert.That((dlr.Options.Loss, dlr.Options.EotIterations), Is.EqualTo((AttackLoss.Dlr, 20)));

        // On a randomised model (noise on the input) the gradient of each step averages EotIterations draws:
        // per stage batch, 1 clean call and (1 + N) * EOT gradient calls, then AutoAttack's check of the result.
        var (net, x, y) = Problem(n: 6, seed: 4);
        var noise = new Generator(9);
        var recorder = new Recorder(input => net.call(input.Plus(randn(input.shape, generator: noise).Times(0.001))));
        using var result = new AutoAttack(Small(0.0, AutoAttackVersion.Rand) with { BatchSize = 8 }).Run(recorder.Call, x, y);
        var survivors = result.Report.Stages.Count(s => s.Attacked > 0);
        Assert.That(result.Report.Stages[0].Attacked, Is.EqualTo(4));
        Assert.That(recorder.Calls, Is.EqualTo(1 + survivors * (1 + (1 + 5) * 2 + 1)));
        recorder.Clear();
    }

    [Test]
    public void StagesNeedingMoreClassesAreSkippedWithAWarning()
    {
        using var scope = NewDisposeScope();
        var (model, x, y) = Problem(n: 6, classes: 3, seed: 5);
        using var result = new AutoAttack(Small(0.02)).Run(model, x, y);
        var apgdT = result.Report.Stages.Single(s => s.Name == "apgd-t");
        Assert.That(apgdT.Skipped, Does.Contain("4 classes"));
        Assert.That(apgdT.Attacked, Is.EqualTo(0));
        Assert.That(result.Report.Warnings, Has.Some.Contains("apgd-t was skipped"));
        Assert.That(result.Report.ToString(), Does.Contain("skipped"));
    }

    [Test]
    public void WarnsWhenSquareBreaksWhatTheGradientAttacksCouldNot()
    {
        using var scope = NewDisposeScope();
        // Zero gradients (quantised input): the gradient attacks are blind, Square is not.
        var inner = new Linear(64, 4, seed: 6, scale: 4);
        Tensor Model(Tensor x) => inner.call(x.Times(8).round().Over(8));
        var x = rand(new long[] { 10, 1, 8, 8 }, generator: new Generator(7)).Times(0.5).Plus(0.25);
        var y = Model(x).argmax(1).detach();
        using var result = new AutoAttack(Small(0.125) with { SquareQueries = 300 }).Run(Model, x, y);
        TestContext.Out.WriteLine(result.Report);
        var square = result.Report.Stages.Single(s => s.Name == "square");
        Assert.That(square.Broken, Is.GreaterThan(0));
        Assert.That(result.Report.Warnings, Has.Some.Contains("gradient masking suspected"));
    }

    [Test]
    public void WarnsAboutProbabilitiesAndRandomOutputs()
    {
        using var scope = NewDisposeScope();
        var (model, x, y) = Problem(n: 4, seed: 8);
        var options = new AutoAttackOptions { Version = AutoAttackVersion.Custom, Stages = [new("none", new ApgdAttack(new ApgdOptions { Epsilon = 0, Iterations = 1 }))], Epsilon = 0 };
        using var softmax = new AutoAttack(options).Run(input => functional.softmax(model.call(input), 1), x, y);
        Assert.That(softmax.Report.Warnings, Has.Some.Contains("probabilities"));
        var g = new Generator(1);
        using var noisy = new AutoAttack(options).Run(input => model.call(input).Plus(randn(input.shape[0], 6, generator: g)), x, y);
        Assert.That(noisy.Report.Warnings, Has.Some.Contains("Version = Rand"));
        using var plain = new AutoAttack(options).Run(model, x, y);
        Assert.That(plain.Report.Warnings, Is.Empty);
    }

    [Test]
    public void ProgressCancellationAndBadStagesAreReported()
    {
        using var scope = NewDisposeScope();
        var (model, x, y) = Problem(n: 6, seed: 9);
        var reports = new List<AutoAttackProgress>();
        var progress = new SynchronousProgress(reports.Add);
        using (new AutoAttack(Small(0.02) with { BatchSize = 3 }, progress: progress).Run(model, x, y)) { }
        Assert.That(reports.Select(r => r.Stage).Distinct(), Is.SubsetOf(new[] { "apgd-ce", "apgd-t", "fab-t", "square" }));
        Assert.That(reports.First().Stage, Is.EqualTo("apgd-ce"));
        Assert.That(reports.First().ToAttack, Is.EqualTo(4));
        Assert.That(reports.Where(r => r.Done == r.ToAttack).Select(r => r.Stage), Is.Unique);

        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Throws<OperationCanceledException>(() => new AutoAttack(Small(0.02)).Run(model, x, y, cancelled.Token));

        // A stage built for a larger ball is refused, naming it.
        var wide = new AutoAttackOptions
        {
            Epsilon = 0.01, Version = AutoAttackVersion.Custom,
            Stages = [new("wide-pgd", new PgdAttack(new PgdOptions { Epsilon = 0.2, StepSize = 0.1, Steps = 2 }))],
        };
        var e = Assert.Throws<InvalidOperationException>(() => new AutoAttack(wide).Run(model, x, y));
        Assert.That(e!.Message, Does.Contain("wide-pgd").And.Contain("outside"));

        Assert.That(Assert.Throws<ArgumentException>(() => new AutoAttack(new AutoAttackOptions { Version = AutoAttackVersion.Custom }))!.ParamName, Is.EqualTo("Stages"));
        Assert.That(Assert.Throws<ArgumentException>(() => new AutoAttack(new AutoAttackOptions { Stages = wide.Stages }))!.ParamName, Is.EqualTo("Stages"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new AutoAttack(new AutoAttackOptions { BatchSize = 0 }))!.ParamName, Is.EqualTo("BatchSize"));
        Assert.That(Assert.Throws<ArgumentException>(() => new AutoAttack().Run(model, x, y[..3]))!.ParamName, Is.EqualTo("labels"));
    }

    [Test]
    public void CallersModelStateIsRestoredAndOnlyTheResultOutlivesTheRun()
    {
        var (model, x, y) = Problem(n: 5, seed: 10);
        model.train();
        var flags = model.parameters().Select(p => p.requires_grad).ToList();
        var attack = new AutoAttack(Small(0.03));
        attack.Perturb(model, x, y).Dispose(); // warm-up
        Assert.That(model.training, Is.True);
        Assert.That(model.parameters().Select(p => p.requires_grad), Is.EqualTo(flags));

        var before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var adv = attack.Perturb(model, x, y);
        Assert.That(DisposeScopeManager.Statistics.ThreadTotalLiveCount - before, Is.EqualTo(1), "only the result is alive");
        adv.Dispose();
        x.Dispose();
        y.Dispose();
    }

    private sealed class SynchronousProgress : IProgress<AutoAttackProgress>
    {
        private readonly Action<AutoAttackProgress> _report;

        public SynchronousProgress(Action<AutoAttackProgress> report) => _report = report;

        public void Report(AutoAttackProgress value) => _report(value);
    }
}
