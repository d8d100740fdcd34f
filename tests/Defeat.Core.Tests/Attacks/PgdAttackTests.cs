using Defeat.Tests.Fakes;
using Defeat.Attacks;
using TorchSharp.Modules;
using static TorchSharp.torch.nn;

namespace Defeat.Tests.Attacks;

public class PgdAttackTests
{
    // logits = x_flat @ W^T + b: a linear classifier whose worst case has a closed form.
    private sealed class LinearClassifier : Module<Tensor, Tensor>
    {
        private readonly Linear fc;

        public LinearClassifier(int inputs, int classes, int seed) : base(nameof(LinearClassifier))
        {
            manual_seed(seed);
            fc = Linear(inputs, classes);
            RegisterComponents();
        }

        public Tensor Weight => fc.weight!;

        public override Tensor forward(Tensor x) => fc.call(x.flatten(1));
    }

    private static Module<Tensor, Tensor> SmallCnn(int seed)
    {
        manual_seed(seed);
        return Sequential(
            ("conv", new PatchConv(3, 4, 3)),
            ("act", Tanh()),
            ("flat", Flatten()),
            ("fc", Linear(4 * 6 * 6, 5)));
    }

    [Test]
    public void LInfOnLinearModelReachesAnalyticWorstCase()
    {
        using var scope = NewDisposeScope();
        var model = new LinearClassifier(12, 2, seed: 1);
        var generator = new Generator(7);
        var x = rand(new long[] { 6, 1, 3, 4 }, generator: generator);
        var y = tensor(new long[] { 0, 1, 0, 1, 0, 1 });
        const double eps = 0.1;
        var attack = new PgdAttack(new PgdOptions { Epsilon = eps, StepSize = eps / 2, Steps = 4, RandomStart = false });

        var adv = attack.Perturb(model, x, y);

        // CE gradient of a 2-class linear model points along w_other - w_true for every input,
        // so the L-inf worst case is x + eps * sign(w_other - w_true), clipped to [0, 1].
        var w = model.Weight.detach();
        var diff = stack(new[] { w[1] - w[0], w[0] - w[1] })[y].reshape(x.shape);
        var expected = x.Plus(diff.sign().Times(eps)).Clamp(0, 1);
        Assert.That((adv - expected).abs().max().item<float>(), Is.LessThan(1e-6f));
    }

    [Test]
    public void L2OnLinearModelReachesAnalyticWorstCase()
    {
        using var scope = NewDisposeScope();
        var model = new LinearClassifier(12, 2, seed: 2);
        var x = rand(new long[] { 4, 1, 3, 4 }, generator: new Generator(3)).Times(0.4).Plus(0.3);
        var y = tensor(new long[] { 1, 0, 1, 0 });
        const double eps = 0.05; // small enough that no pixel reaches 0 or 1
        var attack = new PgdAttack(new PgdOptions { Norm = AttackNorm.L2, Epsilon = eps, StepSize = eps / 3, Steps = 6, RandomStart = false });

        var adv = attack.Perturb(model, x, y);

        var w = model.Weight.detach();
        var diff = stack(new[] { w[1] - w[0], w[0] - w[1] })[y];
        var unit = diff / diff.norm(1, keepdim: true);
        var expected = x.Plus(unit.reshape(x.shape).Times(eps));
        Assert.That((adv - expected).abs().max().item<float>(), Is.LessThan(1e-6f));
    }

    [Test]
    public void Float64ImagesStayFloat64AndInTheBall()
    {
        using var scope = NewDisposeScope();
        var model = new LinearClassifier(12, 2, seed: 8);
        model.to(ScalarType.Float64);
        var x = rand(new long[] { 3, 1, 3, 4 }, dtype: ScalarType.Float64, generator: new Generator(9));
        var y = tensor(new long[] { 0, 1, 1 });
        var adv = new PgdAttack(new PgdOptions { Epsilon = 0.1, StepSize = 0.04, Steps = 4 }).Perturb(model, x, y);
        Assert.That(adv.dtype, Is.EqualTo(ScalarType.Float64));
        Assert.That((adv - x).abs().max().item<double>(), Is.LessThanOrEqualTo(0.1));
        Assert.That((adv - x).abs().max().item<double>(), Is.GreaterThan(0.05));
    }

    [Test]
    public void TargetedMarginOnLinearModelMovesTowardTarget()
    {
        using var scope = NewDisposeScope();
        var model = new LinearClassifier(8, 2, seed: 4);
        var x = rand(new long[] { 3, 1, 2, 4 }, generator: new Generator(5));
        var target = tensor(new long[] { 1, 1, 0 });
        const double eps = 0.08;
        var attack = new PgdAttack(new PgdOptions { Epsilon = eps, StepSize = eps, Steps = 2, RandomStart = false, Loss = AttackLoss.Margin, Targeted = true });

        var adv = attack.Perturb(model, x, target);

        // Targeted margin z_t - z_other grows along w_t - w_other.
        var w = model.Weight.detach();
        var diff = stack(new[] { w[0] - w[1], w[1] - w[0] })[target].reshape(x.shape);
        var expected = x.Plus(diff.sign().Times(eps)).Clamp(0, 1);
        Assert.That((adv - expected).abs().max().item<float>(), Is.LessThan(1e-6f));
    }

    [TestCase(AttackNorm.LInf, 8.0 / 255)]
    [TestCase(AttackNorm.L2, 0.5)]
    public void ResultLiesInBallAndPixelRangeExactly(AttackNorm norm, double eps)
    {
        using var scope = NewDisposeScope();
        var model = SmallCnn(11);
        var x = rand(new long[] { 4, 3, 6, 6 }, generator: new Generator(12));
        // Pixels at the edges of [0, 1], where the clamp and the ball interact.
        x[0, 0] = zeros(6, 6);
        x[1, 1] = ones(6, 6);
        var y = tensor(new long[] { 0, 1, 2, 3 });
        var attack = new PgdAttack(new PgdOptions { Norm = norm, Epsilon = eps, StepSize = eps / 3, Steps = 5, Restarts = 2, Seed = 9 });

        var adv = attack.Perturb(model, x, y);

        Assert.That(adv.shape, Is.EqualTo(x.shape));
        Assert.That(adv.dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(adv.requires_grad, Is.False);
        Assert.That(adv.min().item<float>(), Is.GreaterThanOrEqualTo(0f));
        Assert.That(adv.max().item<float>(), Is.LessThanOrEqualTo(1f));
        var delta = adv.to_type(ScalarType.Float64) - x.to_type(ScalarType.Float64);
        var size = norm == AttackNorm.LInf ? delta.abs().max().item<double>() : delta.flatten(1).norm(1).max().item<double>();
        Assert.That(size, Is.LessThanOrEqualTo(eps));
        Assert.That(size, Is.GreaterThan(eps * 0.5), "the attack should use most of its budget");
    }

    [Test]
    public void AttackRaisesTheLoss()
    {
        using var scope = NewDisposeScope();
        var model = SmallCnn(21);
        var x = rand(new long[] { 8, 3, 6, 6 }, generator: new Generator(22));
        var y = model.call(x).argmax(1).detach(); // labels the model gets right
        var attack = new PgdAttack(PgdOptions.DefeatTraining(8.0 / 255) with { Seed = 3 });

        var adv = attack.Perturb(model, x, y);

        using var _ = no_grad();
        var before = functional.cross_entropy(model.call(x), y, reduction: Reduction.None);
        var after = functional.cross_entropy(model.call(adv), y, reduction: Reduction.None);
        Assert.That((after - before).min().item<float>(), Is.GreaterThan(0f), "every sample's loss should rise");
    }

    [Test]
    public void RestartsKeepTheWorstCandidatePerSample()
    {
        using var scope = NewDisposeScope();
        var net = SmallCnn(31);
        var candidates = new List<Tensor>();
        // The attack evaluates each restart's final point without gradients: record those points.
        Tensor Model(Tensor images)
        {
            if (!images.requires_grad) candidates.Add(images.detach().clone().MoveToOuterDisposeScope());
            return net.call(images);
        }

        var x = rand(new long[] { 6, 3, 6, 6 }, generator: new Generator(32));
        var y = tensor(new long[] { 0, 1, 2, 3, 4, 0 });
        var attack = new PgdAttack(new PgdOptions { Epsilon = 0.2, StepSize = 0.05, Steps = 2, Restarts = 4, Seed = 5, Loss = AttackLoss.Margin });

        var adv = attack.Perturb(Model, x, y);

        Assert.That(candidates, Has.Count.EqualTo(4));
        using var _ = no_grad();
        for (var i = 0; i < 6; i++)
        {
            // Brute force: success first, then the highest margin loss.
            var bestIndex = -1;
            var bestKey = (Success: false, Loss: double.NegativeInfinity);
            for (var r = 0; r < candidates.Count; r++)
            {
                var logits = net.call(candidates[r][i].unsqueeze(0)).squeeze(0).data<float>().ToArray();
                var label = (int)y[i].item<long>();
                var own = logits[label];
                var other = logits.Where((_, k) => k != label).Max();
                var key = (Success: other > own, Loss: (double)(other - own));
                if (bestIndex < 0 || (key.Success && !bestKey.Success) || (key.Success == bestKey.Success && key.Loss > bestKey.Loss))
                    (bestIndex, bestKey) = (r, key);
            }
            Assert.That((adv[i] - candidates[bestIndex][i]).abs().max().item<float>(), Is.LessThan(1e-7f), $"sample {i}");
        }
        Assert.That(candidates.Select(c => (c - candidates[0]).abs().max().item<float>()).Skip(1), Has.All.GreaterThan(0f), "restarts differ");
    }

    [Test]
    public void CallersModelStateIsUnchanged()
    {
        using var scope = NewDisposeScope();
        var model = SmallCnn(41);
        var x = rand(new long[] { 2, 3, 6, 6 }, generator: new Generator(42));
        var y = tensor(new long[] { 1, 2 });
        // A caller mid-training: gradients present, one frozen tensor, a child in eval mode.
        functional.cross_entropy(model.call(x), y).backward();
        var parameters = model.named_parameters().ToList();
        parameters[1].parameter.requires_grad = false;
        model.train();
        model.named_children().First(c => c.name == "act").module.eval();
        var values = parameters.Select(p => p.parameter.detach().clone()).ToList();
        var grads = parameters.Select(p => p.parameter.grad?.clone()).ToList();
        var flags = parameters.Select(p => p.parameter.requires_grad).ToList();
        var modes = model.named_modules().Select(m => m.module.training).Prepend(model.training).ToList();

        new PgdAttack(PgdOptions.DefeatTraining(4.0 / 255)).Perturb(model, x, y);

        var after = model.named_parameters().ToList();
        for (var i = 0; i < parameters.Count; i++)
        {
            Assert.That(ReferenceEquals(after[i].parameter, parameters[i].parameter), Is.True);
            Assert.That(after[i].parameter.equal(values[i]).all().item<bool>(), Is.True, $"value of {after[i].name}");
            Assert.That(after[i].parameter.requires_grad, Is.EqualTo(flags[i]), $"requires_grad of {after[i].name}");
            var grad = after[i].parameter.grad;
            if (grads[i] is null) Assert.That(grad, Is.Null, $"grad of {after[i].name}");
            else Assert.That(grad!.equal(grads[i]!).all().item<bool>(), Is.True, $"grad of {after[i].name}");
        }
        Assert.That(model.named_modules().Select(m => m.module.training).Prepend(model.training), Is.EqualTo(modes));
        Assert.That(modes, Does.Contain(false).And.Contain(true));
    }

    [Test]
    public void NoTensorOutlivesTheAttackButItsResult()
    {
        var model = SmallCnn(81);
        using var x = rand(new long[] { 2, 3, 6, 6 }, generator: new Generator(82));
        using var y = tensor(new long[] { 0, 1 });
        var attack = new PgdAttack(new PgdOptions { Steps = 5, Restarts = 2, Norm = AttackNorm.L2, Epsilon = 0.5, StepSize = 0.2 });
        attack.Perturb(model, x, y).Dispose(); // warm-up
        var before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var adv = attack.Perturb(model, x, y);
        Assert.That(DisposeScopeManager.Statistics.ThreadTotalLiveCount - before, Is.EqualTo(1), "only the result is alive");
        adv.Dispose();
    }

    [Test]
    public void SameSeedSameResultOtherSeedOtherResult()
    {
        using var scope = NewDisposeScope();
        var model = SmallCnn(51);
        var x = rand(new long[] { 2, 3, 6, 6 }, generator: new Generator(52));
        var y = tensor(new long[] { 0, 1 });
        var options = new PgdOptions { Epsilon = 0.1, StepSize = 0.01, Steps = 2, Seed = 1 };
        var a = new PgdAttack(options).Perturb(model, x, y);
        var b = new PgdAttack(options).Perturb(model, x, y);
        var c = new PgdAttack(options with { Seed = 2 }).Perturb(model, x, y);
        Assert.That(a.equal(b).all().item<bool>(), Is.True);
        Assert.That(a.equal(c).all().item<bool>(), Is.False);
    }

    private sealed class Recorder : IProgress<PgdProgress>
    {
        public List<PgdProgress> Reports { get; } = new();
        public void Report(PgdProgress value) => Reports.Add(value);
    }

    [Test]
    public void ProgressIsReportedAfterEveryStep()
    {
        using var scope = NewDisposeScope();
        var recorder = new Recorder();
        new PgdAttack(new PgdOptions { Steps = 3, Restarts = 2 }, progress: recorder).Perturb(SmallCnn(62), rand(1, 3, 6, 6), tensor(new long[] { 0 }));
        Assert.That(recorder.Reports, Is.EqualTo(new[]
        {
            new PgdProgress(0, 1, 3, 2), new PgdProgress(0, 2, 3, 2), new PgdProgress(0, 3, 3, 2),
            new PgdProgress(1, 1, 3, 2), new PgdProgress(1, 2, 3, 2), new PgdProgress(1, 3, 3, 2),
        }));
    }

    [Test]
    public void CancellationStopsTheAttack()
    {
        using var scope = NewDisposeScope();
        var model = SmallCnn(61);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Throws<OperationCanceledException>(() =>
            new PgdAttack().Perturb(model, rand(1, 3, 6, 6), tensor(new long[] { 0 }), cts.Token));
    }

    [Test]
    public void PresetsMatchTheDefeatProtocol()
    {
        var training = PgdOptions.DefeatTraining(4.0 / 255);
        Assert.That((training.Steps, training.StepSize, training.RandomStart, training.Norm), Is.EqualTo((3, 8.0 / 765, true, AttackNorm.LInf)));
        var evaluation = PgdOptions.DefeatEvaluation(4.0 / 255);
        Assert.That((evaluation.Steps, evaluation.StepSize, evaluation.RandomStart, evaluation.Restarts), Is.EqualTo((100, 1.0 / 255, true, 1)));
    }

    [Test]
    public void BadInputsGiveClearErrors()
    {
        using var scope = NewDisposeScope();
        var model = SmallCnn(71);
        var attack = new PgdAttack();
        var x = rand(2, 3, 6, 6);
        var e1 = Assert.Throws<ArgumentException>(() => attack.Perturb(model, x, tensor(new long[] { 0, 1, 2 })));
        Assert.That(e1!.ParamName, Is.EqualTo("labels"));
        Assert.That(e1.Message, Does.Contain("int64 [2]").And.Contain("[3]"));
        var e2 = Assert.Throws<ArgumentException>(() => attack.Perturb(model, x.Times(3), tensor(new long[] { 0, 1 })));
        Assert.That(e2!.Message, Does.Contain("[0, 1]"));
        var e3 = Assert.Throws<ArgumentException>(() => attack.Perturb((Func<Tensor, Tensor>)(i => i.flatten()), x, tensor(new long[] { 0, 1 })));
        Assert.That(e3!.Message, Does.Contain("logits [B=2, classes]"));
        var e4 = Assert.Throws<ArgumentOutOfRangeException>(() => new PgdAttack(new PgdOptions { Steps = -1 }));
        Assert.That(e4!.ParamName, Is.EqualTo("Steps"));
        Assert.That(e4.Message, Does.Contain("-1"));
    }
}
