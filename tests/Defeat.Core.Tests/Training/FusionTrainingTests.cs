using Defeat.Model;
using Defeat.Attacks;
using Defeat.Data;
using Defeat.Fusion;
using Defeat.Prompting;
using Defeat.Shield;
using Defeat.Tests.Fakes;
using Defeat.Training;

namespace Defeat.Tests.Training;

/// <summary>The learnable and confidence-adaptive fusions inside DefeatModel's training.</summary>
public class FusionTrainingTests
{
    private static readonly string[] Classes = { "cat", "dog", "red car", "bird" };

    private static DefeatModel Build(LogitFusionOptions fusion)
    {
        var backbone = new FakeBackbone(seed: 3);
        manual_seed(4);
        var learner = new PromptLearner(backbone, Classes, new PromptLearnerOptions { ContextLength = 4, Seed = 1 });
        var shield = new PerturbShield(new PerturbShieldOptions { FeatureDim = 8, GridHeight = 3, GridWidth = 3, HiddenDim = 4, CodebookSize = 16 });
        return new DefeatModel(backbone, learner, shield, new LogitFusion(fusion));
    }

    private static Tensor Images(int batch, int seed) => rand(new long[] { batch, 3, 12, 12 }, generator: new Generator((ulong)seed));

    [Test]
    public void ALearnableAlphaReceivesTheHandComputedGradient()
    {
        using var scope = NewDisposeScope();
        var model = Build(new LogitFusionOptions { Mode = FusionMode.LearnableAlpha, Alpha = 0.3 });
        var alpha = model.named_parameters().Single(p => p.name == "fusion.alpha_logit").parameter;
        Assert.That(model.TrainableParameters(), Does.Contain(alpha));
        Assert.That(model.TrainableStateDict().Keys, Does.Contain("fusion.alpha_logit"));

        var y = tensor(new long[] { 0, 3, 1 });
        model.train();
        using var output = model.call(Images(3, 1), y);
        output.Total.backward();

        // Only the cross-entropy depends on a: d/da CE(s(a) c + (1 - s(a)) r) = s'(a) sum((softmax(f) - onehot) * (c - r)) / B.
        var f = output.Logits.detach();
        var residual = (f.softmax(1) - nn.functional.one_hot(y, 4).to_type(f.dtype)).Over(3);
        var expected = (residual * (output.CleanLogits.detach() - output.RobustLogits!.detach())).sum().Times(0.3 * 0.7);
        Assert.That(alpha.grad!.item<float>(), Is.EqualTo(expected.item<float>()).Within(1e-5));
        Assert.That(Math.Abs(alpha.grad!.item<float>()), Is.GreaterThan(1e-6f));
    }

    [Test]
    public void TheTrainerMovesTheLearnableAlpha()
    {
        var model = Build(new LogitFusionOptions { Mode = FusionMode.LearnableAlpha, Alpha = 0.5 });
        using var data = new LabeledImages(Images(8, 2), tensor(new long[] { 0, 1, 2, 3, 0, 1, 2, 3 }), Classes);
        new DefeatTrainer(new DefeatTrainerOptions
        {
            Epochs = 1, WarmupEpochs = 0, BatchSize = 4, LearningRate = 0.5, Attack = PgdOptions.DefeatTraining(4.0 / 255),
        }).Train(model, data);
        Assert.That(((LogitFusion)model.Fusion!).CurrentAlpha, Is.Not.EqualTo(0.5).Within(1e-4));
    }

    [Test]
    public void TheAdaptiveFusionWeighsEachSampleAndTrainsBothBranches()
    {
        using var scope = NewDisposeScope();
        var model = Build(new LogitFusionOptions { Mode = FusionMode.Adaptive, Temperature = 0.5 });
        Assert.That(model.named_parameters().Select(p => p.name).Where(n => n.StartsWith("fusion.", StringComparison.Ordinal)), Is.Empty);
        using var output = model.call(Images(3, 3), tensor(new long[] { 2, 0, 1 }));
        // By hand: weights softmax([max p_clean, max p_robust] / T) per sample.
        var c = output.CleanLogits.detach();
        var r = output.RobustLogits!.detach();
        var scores = stack(new[] { c.softmax(1).max(1).values, r.softmax(1).max(1).values }, 1).Over(0.5);
        var w = scores.softmax(1);
        var fused = (w[.., 0..1] * c).Plus(w[.., 1..2] * r);
        Assert.That((output.Logits.detach() - fused).abs().max().item<float>(), Is.LessThan(1e-5f));
        output.Total.backward();
        foreach (var name in new[] { "prompt_learner.ctx", "shield.vqvae.encoder.0.weight", "shield.cls_projection.linear.weight" })
            Assert.That(model.named_parameters().Single(p => p.name == name).parameter.grad!.abs().sum().item<float>(), Is.GreaterThan(0f), name);
    }
}
