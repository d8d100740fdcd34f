using Defeat.Training;
using TorchSharp.Modules;

namespace Defeat.Tests.Training;

/// <summary>MomentumSgd is TorchSharp's optim.SGD update, bit for bit, with its Scalars held across each call.</summary>
public class MomentumSgdTests
{
    /// <summary>Two copies of the same parameters, a quadratic loss with a different target at each step.</summary>
    private static (Parameter[] A, Parameter[] B) Twins()
    {
        var g = new Generator(7);
        var w = randn([5, 3], generator: g);
        var b = randn([3], generator: g);
        return ([new Parameter(w.clone()), new Parameter(b.clone())], [new Parameter(w.clone()), new Parameter(b.clone())]);
    }

    private static void Backward(Parameter[] p, int step)
    {
        var g = new Generator((ulong)(100 + step));
        var x = randn([4, 5], generator: g);
        var target = randn([4, 3], generator: g);
        nn.functional.mse_loss(x.matmul(p[0]).Plus(p[1]), target).backward();
    }

    [TestCase(0.9, 5e-4)]
    [TestCase(0.0, 0.0)]
    [TestCase(0.5, 0.1)]
    public void StepsMatchTorchSharpSgdBitForBit(double momentum, double weightDecay)
    {
        using var scope = NewDisposeScope();
        var (mine, theirs) = Twins();
        using var sgd = new MomentumSgd(mine, 0.05, momentum, weightDecay);
        // TorchSharp's own SGD is the reference here, so the ban on it (its Scalars race the finalizer) is lifted; this
        // test runs without a collecting thread.
#pragma warning disable RS0030
        using var reference = optim.SGD(theirs, 0.05, momentum, weight_decay: weightDecay);
        for (int step = 0; step < 6; step++)
        {
            double lr = 0.05 * (6 - step) / 6; // a changing rate, as a schedule sets it
            sgd.LearningRate = lr;
            foreach (var group in reference.ParamGroups) group.LearningRate = lr;
            sgd.ZeroGrad();
            reference.zero_grad();
            Backward(mine, step);
            Backward(theirs, step);
            sgd.Step();
            reference.step();
#pragma warning restore RS0030
            for (int i = 0; i < mine.Length; i++)
                Assert.That(mine[i].data<float>().ToArray(), Is.EqualTo(theirs[i].data<float>().ToArray()), $"parameter {i} after step {step}");
        }
    }

    [Test]
    public void RestoredBuffersContinueAsIfUninterrupted()
    {
        using var scope = NewDisposeScope();
        var (straight, resumed) = Twins();
        using var a = new MomentumSgd(straight, 0.05, 0.9, 0);
        var b = new MomentumSgd(resumed, 0.05, 0.9, 0);
        for (int step = 0; step < 4; step++)
        {
            a.ZeroGrad();
            Backward(straight, step);
            a.Step();
            if (step == 2) continue;
            b.ZeroGrad();
            Backward(resumed, step);
            b.Step();
            if (step == 1)
            {
                // A new optimizer from b's buffers, as a resumed run builds one from its checkpoint.
                var saved = b.Buffers().Select(t => (t.Index, t.Buffer.clone())).ToList();
                b.Dispose();
                b = new MomentumSgd(resumed, 0.05, 0.9, 0);
                foreach (var (i, buffer) in saved) b.LoadBuffer(i, buffer);
                b.ZeroGrad();
                Backward(resumed, 2);
                b.Step();
            }
        }
        b.Dispose();
        for (int i = 0; i < straight.Length; i++)
            Assert.That(resumed[i].data<float>().ToArray(), Is.EqualTo(straight[i].data<float>().ToArray()));
    }

    [Test]
    public void BadArgumentsAreNamed()
    {
        using var p = new Parameter(zeros(2));
        Assert.That(() => new MomentumSgd([], 0.1), Throws.ArgumentException.With.Property("ParamName").EqualTo("parameters"));
        Assert.That(() => new MomentumSgd([p], -1), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("value"));
        Assert.That(() => new MomentumSgd([p], 0.1, momentum: 1), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("momentum"));
        Assert.That(() => new MomentumSgd([p], 0.1, weightDecay: -1), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("weightDecay"));
        using var sgd = new MomentumSgd([p], 0.1);
        Assert.That(() => sgd.LoadBuffer(0, zeros(3)), Throws.ArgumentException.With.Message.Contains("[3]").And.Message.Contains("[2]"));
        Assert.That(() => sgd.LoadBuffer(1, zeros(2)), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("index"));
    }
}
