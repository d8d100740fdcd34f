using Defeat.Attacks;
using Defeat.Fusion;
using Defeat.Model;
using Defeat.Prompting;
using Defeat.Shield;
using Defeat.Tests.Fakes;

namespace Defeat.Tests.Model;

public class DefeatModelTests
{
    private static readonly string[] Classes = { "cat", "dog", "red car", "bird" };

    private static PerturbShieldOptions SmallShield => new() { FeatureDim = 8, GridHeight = 3, GridWidth = 3, HiddenDim = 4, CodebookSize = 16 };

    private static (FakeBackbone Backbone, DefeatModel Model) Build(DefeatModelOptions? options = null, ILogitFusion? fusion = null)
    {
        var backbone = new FakeBackbone(seed: 3);
        manual_seed(4);
        var learner = new PromptLearner(backbone, Classes, new PromptLearnerOptions { ContextLength = 4, Seed = 1 });
        var shield = new PerturbShield(SmallShield);
        return (backbone, new DefeatModel(backbone, learner, shield, fusion, options));
    }

    private static Tensor Images(int batch, int seed) => rand(new long[] { batch, 3, 12, 12 }, generator: new Generator((ulong)seed));

    private static float MaxDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Test]
    public void LogitsAndLossTermsMatchHandComputation()
    {
        using var scope = NewDisposeScope();
        var (backbone, model) = Build();
        var x = Images(3, 1);
        var y = tensor(new long[] { 0, 2, 3 });

        using var output = model.call(x, y);

        // Independent recomputation from the parts.
        var features = backbone.EncodeImage(x);
        var learner = (PromptLearner)model.PromptLearner;
        var t = learner.EncodeTextFeatures();
        t = t / t.norm(1, keepdim: true);
        var i = features.ClassFeature / features.ClassFeature.norm(1, keepdim: true);
        var shieldOutput = ((PerturbShield)model.Shield!).Shield(features.GridFeatures);
        var p = shieldOutput.Projected / shieldOutput.Projected.norm(1, keepdim: true);
        var clean = i.matmul(t.t()).Times(10);
        var robust = p.matmul(t.t()).Times(10);
        var fused = clean.Times(0.5).Plus(robust.Times(0.5));
        var logProbabilities = fused.log_softmax(1);
        var ce = (-(logProbabilities[0, 0].Plus(logProbabilities[1, 2]).Plus(logProbabilities[2, 3]))).Over(3);
        var alignment = (i - p).abs().mean();
        var textRegularization = (t - learner.HandcraftedTextFeatures).abs().mean();
        var total = ce.Plus(alignment.Times(10)).Plus(textRegularization.Times(20)).Plus(shieldOutput.Loss);

        Assert.That(MaxDiff(output.CleanLogits, clean), Is.LessThan(1e-5f));
        Assert.That(MaxDiff(output.RobustLogits!, robust), Is.LessThan(1e-5f));
        Assert.That(MaxDiff(output.Logits, fused), Is.LessThan(1e-5f));
        Assert.That(output.CrossEntropy.item<float>(), Is.EqualTo(ce.item<float>()).Within(1e-5));
        Assert.That(output.AlignmentLoss.item<float>(), Is.EqualTo(alignment.item<float>()).Within(1e-6));
        Assert.That(output.TextRegularization.item<float>(), Is.EqualTo(textRegularization.item<float>()).Within(1e-6));
        Assert.That(output.VqVaeLoss.item<float>(), Is.EqualTo(shieldOutput.Loss.item<float>()).Within(1e-6));
        Assert.That(output.ReconstructionLoss.item<float>(), Is.EqualTo(shieldOutput.ReconstructionLoss.item<float>()).Within(1e-6));
        Assert.That(output.Total.item<float>(), Is.EqualTo(total.item<float>()).Within(1e-4));
        Assert.That(output.Indices!.shape, Is.EqualTo(new long[] { 3, 9 }));

        // Each branch as a classifier module returns the same logits.
        Assert.That(MaxDiff(model.AsClassifier(Branch.Clean).call(x), clean), Is.LessThan(1e-5f));
        Assert.That(MaxDiff(model.AsClassifier(Branch.Robust).call(x), robust), Is.LessThan(1e-5f));
        Assert.That(MaxDiff(model.AsClassifier().call(x), fused), Is.LessThan(1e-5f));

        // Reusing precomputed text features gives the same logits.
        Tensor text;
        using (no_grad()) text = model.TextFeatures();
        Assert.That(MaxDiff(model.AsClassifier(Branch.Fused, text).call(x), fused), Is.LessThan(1e-5f));
        Assert.Throws<ArgumentException>(() => model.Logits(x, Branch.Fused, text[..2]));
    }

    [Test]
    public void GradientsReachContextVqVaeAndProjectionButNeverTheBackbone()
    {
        using var scope = NewDisposeScope();
        var (backbone, model) = Build();
        model.train();
        using var output = model.call(Images(4, 2), tensor(new long[] { 0, 1, 2, 3 }));
        output.Total.backward();

        var trainable = model.TrainableParameters().ToList();
        var names = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        Assert.That(names, Does.Contain("prompt_learner.ctx").And.Contain("shield.vqvae.encoder.0.weight")
            .And.Contain("shield.vqvae.vq_embedding.weight").And.Contain("shield.vqvae.decoder.2.weight").And.Contain("shield.cls_projection.linear.weight"));
        foreach (var parameter in trainable)
            Assert.That(parameter.grad!.abs().sum().item<float>(), Is.GreaterThan(0f));
        var backboneParameters = backbone.parameters().ToList();
        Assert.That(backboneParameters, Is.Not.Empty);
        Assert.That(backboneParameters.All(p => !p.requires_grad && p.grad is null), Is.True, "the backbone is frozen and gets no gradient");
        Assert.That(trainable.Any(t => backboneParameters.Any(b => ReferenceEquals(b, t))), Is.False);
        Assert.That(model.TrainableStateDict().Keys.All(k => k.StartsWith("prompt_learner.", StringComparison.Ordinal) || k.StartsWith("shield.", StringComparison.Ordinal)), Is.True);
        Assert.That(backbone.training, Is.False, "the backbone stays in eval mode when the model trains");
    }

    [Test]
    public void WithoutShieldOnlyTheCleanBranchAndTextTermsRemain()
    {
        using var scope = NewDisposeScope();
        var backbone = new FakeBackbone(seed: 3);
        var model = DefeatModel.Create(backbone, Classes, new DefeatModelOptions { UseShield = false }, new PromptLearnerOptions { ContextLength = 4 });
        var x = Images(2, 3);
        var y = tensor(new long[] { 1, 0 });
        using var output = model.call(x, y);

        Assert.That(output.RobustLogits, Is.Null);
        Assert.That(MaxDiff(output.Logits, output.CleanLogits), Is.EqualTo(0f));
        var expected = nn.functional.cross_entropy(output.CleanLogits, y).Plus(output.TextRegularization.Times(20));
        Assert.That(output.Total.item<float>(), Is.EqualTo(expected.item<float>()).Within(1e-5));
        Assert.That(output.VqVaeLoss.item<float>(), Is.EqualTo(0f));
        Assert.That(model.named_parameters().Select(p => p.name), Is.EqualTo(new[] { "prompt_learner.ctx" }));
        Assert.Throws<ArgumentException>(() => model.AsClassifier(Branch.Robust));
        Assert.Throws<InvalidOperationException>(() => model.CodeIndices(x));
    }

    [Test]
    public void ZeroShotUsesTheHandWrittenPrompts()
    {
        using var scope = NewDisposeScope();
        var backbone = new FakeBackbone(seed: 3);
        var model = DefeatModel.Create(backbone, Classes, new DefeatModelOptions { UseShield = false, UseLearnedPrompts = false });
        var x = Images(2, 4);
        using var output = model.call(x, tensor(new long[] { 0, 1 }));
        var hand = backbone.EncodeText(backbone.Tokenize(Classes.Select(c => $"a photo of a {c}.").ToArray()));
        hand = hand / hand.norm(1, keepdim: true);
        var i = backbone.EncodeImage(x).ClassFeature;
        var expected = (i / i.norm(1, keepdim: true)).matmul(hand.t()).Times(10);
        Assert.That(MaxDiff(output.Logits, expected), Is.LessThan(1e-5f));
        Assert.That(output.TextRegularization.item<float>(), Is.EqualTo(0f));
    }

    // A custom fusion that is not a module: element-wise max of the two branches.
    private sealed class MaxFusion : ILogitFusion
    {
        public Tensor Fuse(Tensor clean, Tensor robust) => maximum(clean, robust);
    }

    // A custom one-step attack (FGSM) that implements only the function overload.
    private sealed class Fgsm(double epsilon) : IAdversarialAttack
    {
        public Tensor Perturb(Func<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
        {
            using var _ = enable_grad();
            var x = images.detach().requires_grad_(true);
            var loss = nn.functional.cross_entropy(model(x), labels);
            var grad = torch.autograd.grad(new[] { loss }, new[] { x })[0];
            return images.Plus(grad.sign().Times(epsilon)).Clamp(0, 1).detach();
        }
    }

    [Test]
    public void CustomAttackAndCustomFusionComposeThroughTheInterfaces()
    {
        using var scope = NewDisposeScope();
        var (_, model) = Build(fusion: new MaxFusion());
        var x = Images(3, 5);
        var y = tensor(new long[] { 3, 1, 0 });
        using (var output = model.call(x, y))
            Assert.That(MaxDiff(output.Logits, maximum(output.CleanLogits, output.RobustLogits!)), Is.EqualTo(0f));

        model.train();
        IAdversarialAttack attack = new Fgsm(0.05);
        var classifier = model.AsClassifier();
        var adversarial = attack.Perturb(classifier, x, y); // the default interface method guards the module

        var input = x.detach().requires_grad_(true);
        var gradient = torch.autograd.grad(new[] { nn.functional.cross_entropy(model.Logits(input), y) }, new[] { input })[0];
        Assert.That(MaxDiff(adversarial, x.Plus(gradient.sign().Times(0.05)).Clamp(0, 1)), Is.LessThan(1e-6f));
        Assert.That(model.training, Is.True, "train mode restored");
        Assert.That(model.TrainableParameters().Count(), Is.EqualTo(model.parameters().Count()), "requires_grad restored");
        Assert.That(model.parameters().All(p => p.grad is null), Is.True, "no parameter gradient written");
    }

    [Test]
    public void PgdAgainstTheFusedModelKeepsItsStateAndStaysInTheBall()
    {
        using var scope = NewDisposeScope();
        var (_, model) = Build();
        model.train();
        var before = model.TrainableStateDict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var x = Images(2, 6);
        var y = tensor(new long[] { 0, 1 });
        const double eps = 4.0 / 255;

        var adversarial = new PgdAttack(PgdOptions.DefeatTraining(eps)).Perturb(model.AsClassifier(Branch.Fused), x, y);

        Assert.That((adversarial.to_type(ScalarType.Float64) - x.to_type(ScalarType.Float64)).abs().max().item<double>(), Is.LessThanOrEqualTo(eps));
        Assert.That(model.training, Is.True);
        Assert.That(model.parameters().All(p => p.requires_grad && p.grad is null), Is.True);
        foreach (var (key, value) in model.TrainableStateDict())
            Assert.That(value.equal(before[key]).all().item<bool>(), Is.True, key);
        using var clean = model.call(x, y);
        using var attacked = model.call(adversarial, y);
        Assert.That(attacked.CrossEntropy.item<float>(), Is.GreaterThan(clean.CrossEntropy.item<float>()));
    }

    [Test]
    public void ForwardLeavesNoTensorBehindButItsOutput()
    {
        var (_, model) = Build();
        model.train();
        using var x = Images(2, 8);
        using var y = tensor(new long[] { 0, 1 });
        using (var warmUp = model.call(x, y)) warmUp.Total.backward();
        var before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        using (var output = model.call(x, y)) output.Total.backward();
        using (var logits = model.Logits(x, Branch.Robust)) { }
        Assert.That(DisposeScopeManager.Statistics.ThreadTotalLiveCount - before, Is.EqualTo(0));
    }

    [Test]
    public void CodeIndicesAreTheCodesOfTheForwardPassAndLeaveNothingBehind()
    {
        var (_, model) = Build();
        model.eval();
        using var x = Images(3, 9);
        using var y = tensor(new long[] { 0, 1, 2 });
        using var output = model.call(x, y);
        using var codes = model.CodeIndices(x);
        Assert.That(codes.shape, Is.EqualTo(new long[] { 3, 9 }));
        Assert.That(codes.equal(output.Indices!).all().item<bool>(), Is.True);
        Assert.That(model.Shield!.CodebookSize, Is.EqualTo(16));
        var before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        using (var again = model.CodeIndices(x)) { }
        Assert.That(DisposeScopeManager.Statistics.ThreadTotalLiveCount - before, Is.EqualTo(0));
    }

    [Test]
    public void OfficialCheckpointKeysLoadIntoTheTrainableParts()
    {
        using var scope = NewDisposeScope();
        var fixture = new Defeat.Tests.Shield.ShieldFixture();
        var backbone = new FakeBackbone(featureDim: fixture.D, imageSize: 28, patchSize: 4, seed: 5);
        var model = DefeatModel.Create(backbone, Classes, promptOptions: new PromptLearnerOptions { ContextLength = 3 },
            shieldOptions: new PerturbShieldOptions { HiddenDim = fixture.H, CodebookSize = fixture.K });
        var official = fixture.Names.Where(n => n.StartsWith("vqvae.", StringComparison.Ordinal) || n.StartsWith("cls_projection.", StringComparison.Ordinal))
            .ToDictionary(n => n, n => fixture[n].to_type(ScalarType.Float32));
        official["prompt_learner.ctx"] = randn(3, 6);
        official["prompt_learner.token_prefix"] = zeros(4, 1, 6); // ignored, as the official loader does
        official["image_encoder.conv1.weight"] = zeros(1);        // CLIP weights are ignored

        var loaded = model.LoadOfficialStateDict(official);

        Assert.That(loaded, Has.Count.EqualTo(model.TrainableStateDict().Count));
        var state = model.TrainableStateDict();
        Assert.That(state["prompt_learner.ctx"].equal(official["prompt_learner.ctx"]).all().item<bool>(), Is.True);
        Assert.That(state["shield.vqvae.vq_embedding.weight"].equal(official["vqvae.vq_embedding.weight"]).all().item<bool>(), Is.True);
        Assert.That(state["shield.cls_projection.linear.weight"].equal(official["cls_projection.linear.weight"]).all().item<bool>(), Is.True);
        official.Remove("vqvae.encoder.0.bias");
        var e = Assert.Throws<ArgumentException>(() => model.LoadOfficialStateDict(official));
        Assert.That(e!.Message, Does.Contain("vqvae.encoder.0.bias"));
    }

    [Test]
    public void BadInputsGiveClearErrors()
    {
        using var scope = NewDisposeScope();
        var (backbone, model) = Build();
        var e1 = Assert.Throws<ArgumentException>(() => model.call(Images(2, 7), tensor(new long[] { 0 })));
        Assert.That(e1!.ParamName, Is.EqualTo("labels"));
        Assert.That(e1.Message, Does.Contain("int64 [2]"));
        var e2 = Assert.Throws<ArgumentException>(() => model.Logits(zeros(3, 12, 12)));
        Assert.That(e2!.Message, Does.Contain("[B, 3, 12, 12]").And.Contain("[3, 12, 12]"));
        var learner = new PromptLearner(backbone, Classes, new PromptLearnerOptions { ContextLength = 2 });
        var e3 = Assert.Throws<ArgumentException>(() => new DefeatModel(backbone, learner, new PerturbShield(SmallShield with { GridHeight = 2, GridWidth = 2 })));
        Assert.That(e3!.Message, Does.Contain("[B, 4, 8]").And.Contain("[B, 9, 8]"));
        var e4 = Assert.Throws<ArgumentOutOfRangeException>(() => new DefeatModel(backbone, learner, null, null, new DefeatModelOptions { UseShield = false, AlignmentWeight = -1 }));
        Assert.That(e4!.ParamName, Is.EqualTo("AlignmentWeight"));
    }
}
