using Defeat.Tests.Fakes;
using Defeat.Attacks;
using static TorchSharp.torch.nn;

namespace Defeat.Tests.Attacks;

/// <summary>What one PGD run costs in model calls, and that its in-place L-inf step computes the projection formula exactly.</summary>
public class PgdStepCostTests
{
    private static Module<Tensor, Tensor> SmallCnn(int seed)
    {
        manual_seed(seed);
        return Sequential(
            ("conv", new PatchConv(3, 4, 3)),
            ("act", Tanh()),
            ("flat", Flatten()),
            ("fc", Linear(4 * 6 * 6, 5)));
    }

    [TestCase(1, 5, 5)]   // one restart: one forward per step, nothing to choose between afterwards
    [TestCase(2, 5, 12)]  // two restarts: each is scored once more to keep the worst case per sample
    public void ModelCallsPerAttack(int restarts, int steps, int expectedCalls)
    {
        using var scope = NewDisposeScope();
        var model = SmallCnn(3);
        int calls = 0;
        Tensor Counted(Tensor images) { calls++; return model.call(images); }
        var x = rand(new long[] { 3, 3, 6, 6 }, generator: new Generator(4));
        var y = tensor(new long[] { 0, 1, 2 });
        new PgdAttack(new PgdOptions { Epsilon = 0.05, StepSize = 0.01, Steps = steps, Restarts = restarts }).Perturb(Counted, x, y);
        Assert.That(calls, Is.EqualTo(expectedCalls));
    }

    [TestCase(ScalarType.Float32)]
    [TestCase(ScalarType.Float64)]
    public void LInfStepsEqualTheProjectionFormulaBitForBit(ScalarType dtype)
    {
        // x <- clamp(x0 + clamp(x + a sign(g) - x0, -eps, eps), 0, 1) from x = that projection of x0 + U(-eps, eps),
        // written out here with out-of-place operations; eps is the largest value of the dtype not above epsilon.
        using var scope = NewDisposeScope();
        var model = SmallCnn(5);
        model.to(dtype);
        foreach (var p in model.parameters()) p.requires_grad = false;
        var x0 = rand(new long[] { 4, 3, 6, 6 }, dtype: dtype, generator: new Generator(6));
        var y = tensor(new long[] { 0, 1, 2, 3 });
        const double epsilon = 8.0 / 255, stepSize = 2.0 / 255;
        const ulong seed = 9;
        var options = new PgdOptions { Epsilon = epsilon, StepSize = stepSize, Steps = 4, RandomStart = true, Seed = seed };

        var actual = new PgdAttack(options).Perturb(model, x0, y);

        double eps = epsilon;
        if (dtype == ScalarType.Float32)
        {
            float f = (float)epsilon;
            eps = f > epsilon ? MathF.BitDecrement(f) : f;
        }
        Tensor Project(Tensor x) => x0.Plus((x - x0).Clamp(-eps, eps)).Clamp(0.0, 1.0);
        var uniform = rand(x0.shape, dtype: dtype, generator: new Generator(seed));
        var expected = Project(x0.Plus(uniform.Times(2).Minus(1).Times(epsilon)));
        for (int step = 0; step < options.Steps; step++)
        {
            var input = expected.detach().requires_grad_(true);
            var loss = functional.cross_entropy(model.call(input), y, reduction: Reduction.None).sum();
            var gradient = autograd.grad(new[] { loss }, new[] { input })[0];
            expected = Project(expected.Plus(gradient.sign().Times(stepSize)));
        }

        Assert.That(actual.dtype, Is.EqualTo(dtype));
        Assert.That(actual.equal(expected).all().item<bool>(), Is.True, $"max difference {(actual - expected).abs().max().ToDouble():E3}");
        Assert.That(actual.ne(x0).any().item<bool>(), Is.True, "the attack moved the images");
    }
}
