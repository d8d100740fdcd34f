using Defeat.Model;
using System.Globalization;
using Defeat.Prompting;
using Defeat.Shield;
using Defeat.Tests.Fakes;
using Defeat.Training;

namespace Defeat.Tests.Reliability;

/// <summary>
/// One DEFEAT training step, repeated: every gradient must be finite and bit-identical to the first repetition's.
/// </summary>
/// <remarks>
/// A fresh-clone run on an AVX2 machine saw NaN in <c>shield.vqvae.encoder.0</c>'s gradient in about one process in three
/// with two intra-op threads (docs/reliability.md, "A wrong gradient on some machines"). The sizes here are the tests' small
/// ones on purpose: widths below and not a multiple of the 8- and 16-float SIMD blocks make oneDNN pad its blocked
/// layouts, and the grid arrives both as a channel-first map and as a channels-last view (what a CLIP backbone's
/// <c>[B, N, D]</c> grid becomes). <c>DEFEAT_STRESS_STEPS</c> sets the repetitions (default 100).
/// </remarks>
[NonParallelizable]
public class GradientStressTests
{
    private static readonly string[] Classes = { "cat", "dog", "red car", "bird" };

    private static int Steps =>
        int.TryParse(Environment.GetEnvironmentVariable("DEFEAT_STRESS_STEPS"), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 2 ? n : 100;

    [TestCase(8, 4)]
    [TestCase(8, 12)]
    [TestCase(16, 16)]
    public void ModelTrainingStepGradientsAreFiniteAndRepeatable(int featureDim, int hiddenDim)
    {
        Dictionary<string, Tensor>? first = null;
        for (int step = 0; step < Steps; step++)
        {
            using var scope = NewDisposeScope();
            var backbone = new FakeBackbone(featureDim: featureDim, seed: 3);
            manual_seed(4);
            var learner = new PromptLearner(backbone, Classes, new PromptLearnerOptions { ContextLength = 4, Seed = 1 });
            var shield = new PerturbShield(new PerturbShieldOptions { FeatureDim = featureDim, GridHeight = 3, GridWidth = 3, HiddenDim = hiddenDim, CodebookSize = 16 });
            var model = new DefeatModel(backbone, learner, shield);
            model.train();
            using var output = model.call(rand(new long[] { 4, 3, 12, 12 }, generator: new Generator(2)), tensor(new long[] { 0, 1, 2, 3 }));
            output.Total.backward();
            first = Check(model.named_parameters().Select(p => (p.name, p.parameter.grad)), first, step);
        }
    }

    [TestCase(8, 4)]
    [TestCase(16, 12)]
    public void ShieldGradientsOnAChannelsLastGridAreFiniteAndRepeatable(int featureDim, int hiddenDim)
    {
        Dictionary<string, Tensor>? first = null;
        for (int step = 0; step < Steps; step++)
        {
            using var scope = NewDisposeScope();
            manual_seed(5);
            var shield = new PerturbShield(new PerturbShieldOptions { FeatureDim = featureDim, GridHeight = 3, GridWidth = 3, HiddenDim = hiddenDim, CodebookSize = 16 });
            shield.train();
            // A contiguous [B, N, D] grid, as ln_post(tokens) @ proj gives it: the shield's [B, D, h, w] map is then a channels-last view.
            var grid = randn(new long[] { 4, 9, featureDim }, generator: new Generator(6)).requires_grad_(true);
            var result = shield.Shield(grid);
            result.Loss.Plus(result.Projected.Square().mean()).backward();
            first = Check(shield.named_parameters().Select(p => (p.name, p.parameter.grad)).Append(("input", grid.grad)), first, step);
        }
    }

    [TestCase(8, 4)]
    [TestCase(3, 12)]
    [TestCase(16, 16)]
    public void VqVaeGradientsMatchAFloat64Reference(int featureDim, int hiddenDim)
    {
        // Float64 runs ATen's own convolution, not oneDNN's: an independent reference for the float32 gradients. Before
        // the VQ-VAE laid its maps out channels-last, widths that pad oneDNN's SIMD blocks gave input gradients off by
        // up to 70 % of their size on a 2-core AVX-512 EPYC, at one thread as at two (docs/reliability.md).
        using var scope = NewDisposeScope();
        manual_seed(7);
        var vqvae = new PerturbShield(new PerturbShieldOptions { FeatureDim = featureDim, GridHeight = 3, GridWidth = 3, HiddenDim = hiddenDim, CodebookSize = 16 }).VqVae;
        var map = randn(new long[] { 4, featureDim, 3, 3 }, generator: new Generator(8));
        (Tensor Input, Dictionary<string, Tensor> Weights) Gradients(ScalarType dtype)
        {
            vqvae.to(dtype);
            vqvae.zero_grad();
            var x = map.to_type(dtype).clone().requires_grad_(true);
            var ze = vqvae.Encode(x);
            // Decoder on the encoder output itself (no quantizer in between: its codes would be another test).
            vqvae.Decode(ze).Square().sum().Plus(ze.Square().sum()).backward();
            return (x.grad!.to_type(ScalarType.Float64), vqvae.named_parameters().Where(p => p.parameter.grad is not null)
                .ToDictionary(p => p.name, p => p.parameter.grad!.to_type(ScalarType.Float64)));
        }
        var (input64, weights64) = Gradients(ScalarType.Float64);
        for (int repeat = 0; repeat < 5; repeat++)
        {
            var (input32, weights32) = Gradients(ScalarType.Float32);
            Assert.That(input32.allclose(input64, 1e-4, 1e-3), Is.True, $"input gradient, max difference {(input32 - input64).abs().max().ToDouble():E3} of max {input64.abs().max().ToDouble():E3}, float32 max {input32.abs().max().ToDouble():E3}, repeat {repeat}");
            foreach (var (name, g) in weights64)
                Assert.That(weights32[name].allclose(g, 1e-4, 1e-3), Is.True, $"{name}, max difference {(weights32[name] - g).abs().max().ToDouble():E3}");
        }
    }

    private static Dictionary<string, Tensor> Check(IEnumerable<(string Name, Tensor? Grad)> gradients, Dictionary<string, Tensor>? first, int step)
    {
        var now = new Dictionary<string, Tensor>();
        foreach (var (name, grad) in gradients)
        {
            Assert.That(grad, Is.Not.Null, $"{name} got no gradient");
            Assert.That(grad!.isfinite().all().item<bool>(), Is.True, $"step {step}: {name}'s gradient has {grad.isnan().sum().item<long>()} NaN of {grad.numel()}");
            now[name] = grad.detach().clone().DetachFromDisposeScope();
        }
        if (first is null) return now;
        foreach (var (name, grad) in now)
        {
            Assert.That(grad.eq(first[name]).all().item<bool>(), Is.True, $"step {step}: {name}'s gradient differs from the first step's");
            grad.Dispose();
        }
        return first;
    }
}
