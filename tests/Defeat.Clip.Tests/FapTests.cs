using Defeat.Model;
using Defeat.Attacks;
using Defeat.Clip;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Prompting;
using Defeat.Training;

namespace Defeat.Tests.Clip;

/// <summary>FAP on a tiny random CLIP: prompts, gradients, the CoOp special case, the loss and a training run.</summary>
public class FapTests
{
    private static readonly string[] Classes = ["sandal", "coat", "bag"];

    private static ClipModel TinyClip(int layers = 3)
    {
        var clip = new ClipModel(ClipConfig.Tiny(imageResolution: 8, patchSize: 4, inputChannels: 1, width: 32, layers: layers, heads: 2, embedDim: 16, contextLength: 16));
        clip.InitializeParameters(seed: 7);
        return clip;
    }

    [Test]
    public void PromptsFollowTheLayoutOfTheOptions()
    {
        using var clip = TinyClip();
        using var learner = new FapPromptLearner(clip, Classes, new FapPromptLearnerOptions { Depth = 3 });
        var prompts = learner.BuildPrompts();
        // "a photo of a": the first two tokens are learned and start as their word embeddings; "of a" stays fixed.
        var phrase = clip.EmbedTokens(clip.Tokenize(["a photo of a"]));
        Assert.That(learner.Context.allclose(phrase[0, 1..3], 0, 0), Is.True);
        var ids = clip.Tokenize(Classes.Select(c => $"a photo of a {c}.").ToArray());
        Assert.That(prompts.TokenIds.eq(ids).all().item<bool>(), Is.True);
        Assert.That(prompts.PromptEmbeddings.allclose(clip.EmbedTokens(ids), 0, 0), Is.True);
        Assert.That(prompts.PromptTokens(Backbones.PromptTower.Text, 0), Is.Null);
        Assert.That(prompts.PromptTokens(Backbones.PromptTower.Vision, 0)!.shape, Is.EqualTo(new long[] { 2, 32 }));
        Assert.That(prompts.PromptTokens(Backbones.PromptTower.Text, 2)!.shape, Is.EqualTo(new long[] { 2, 32 }));
        Assert.That(prompts.PromptTokens(Backbones.PromptTower.Vision, 3), Is.Null);
        var keys = learner.state_dict().Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();
        Assert.That(keys, Is.EqualTo(new[]
        {
            "compound_prompt_projections.0.bias", "compound_prompt_projections.0.weight",
            "compound_prompt_projections.1.bias", "compound_prompt_projections.1.weight",
            "compound_prompts_image.0", "compound_prompts_image.1", "ctx", "proj.bias", "proj.weight",
        }));
        // Layer 1's text prompt is the projection of the learned vision prompt.
        var w = learner.state_dict();
        var projected = w["compound_prompts_image.0"].matmul(w["compound_prompt_projections.0.weight"].t()).Plus(w["compound_prompt_projections.0.bias"]);
        Assert.That(prompts.Text[1]!.allclose(projected, 1e-6, 1e-6), Is.True);
    }

    [Test]
    public void TooDeepPromptsAreRefused()
    {
        using var clip = TinyClip(layers: 2);
        var e = Assert.Throws<ArgumentException>(() => new FapPromptLearner(clip, Classes))!;
        Assert.That(e.Message, Does.Contain("Depth 9").And.Contain("at most 2"));
    }

    [Test]
    public void GradientsReachEveryPromptAndProjectionAndNeverTheBackbone()
    {
        using var clip = TinyClip();
        using var model = FapModel.Create(clip, Classes, new FapPromptLearnerOptions { Depth = 3, Seed = 4 });
        var clean = rand([2, 1, 8, 8], generator: new Generator(3));
        var adversarial = clean.Plus(randn([2, 1, 8, 8], generator: new Generator(4)).Times(0.05)).Clamp(0, 1);
        var loss = model.Loss(adversarial, tensor(new long[] { 0, 2 }), clean);
        loss.Total.backward();
        var named = model.named_parameters().ToList();
        Assert.That(named, Has.Count.EqualTo(9));
        foreach (var (name, p) in named)
            Assert.That(p.grad is not null && p.grad.abs().sum().item<float>() > 0, Is.True, name);
        Assert.That(clip.parameters().All(p => p.grad is null && !p.requires_grad), Is.True);
        Assert.That(model.TrainableParameters().Count(), Is.EqualTo(9));
    }

    [Test]
    public void LossIsCleanCrossEntropyPlusTheWeightedAdversarialTerm()
    {
        using var clip = TinyClip();
        using var model = FapModel.Create(clip, Classes, new FapPromptLearnerOptions { Depth = 2, Seed = 1 }, new FapModelOptions { AdversarialWeight = 2.5 });
        var clean = rand([3, 1, 8, 8], generator: new Generator(5));
        var adversarial = clean.Plus(randn([3, 1, 8, 8], generator: new Generator(6)).Times(0.1)).Clamp(0, 1);
        var labels = tensor(new long[] { 1, 0, 2 });
        var loss = model.Loss(adversarial, labels, clean);

        // By hand from the public pieces: logits of each batch on its own, features from the prompted image tower.
        var prompts = model.PromptLearner.BuildPrompts();
        var text = nn.functional.normalize(model.PromptLearner.EncodeTextFeatures(prompts), dim: -1);
        (Tensor Logits, Tensor Features) Side(Tensor x)
        {
            var f = clip.EncodeImage(x, prompts).ClassFeature;
            return (clip.LogitScale * nn.functional.normalize(f, dim: -1).matmul(text.t()), f);
        }
        var (lc, fc) = Side(clean);
        var (la, fa) = Side(adversarial);
        Assert.That(model.forward(clean).allclose(lc, 1e-5, 1e-5), Is.True);
        var ce = nn.functional.cross_entropy(lc, labels).item<float>();
        var pc = lc.softmax(1);
        var kl = (pc * (lc.log_softmax(1) - la.log_softmax(1))).sum(1);
        var adv = (kl * nn.functional.cosine_similarity(fc, fa, 1).Plus(1)).mean().item<float>();
        Assert.That(loss.Parts["ce"].item<float>(), Is.EqualTo(ce).Within(1e-5));
        Assert.That(loss.Parts["adv"].item<float>(), Is.EqualTo(adv).Within(1e-5));
        Assert.That(adv, Is.GreaterThan(0));
        Assert.That(loss.Total.item<float>(), Is.EqualTo(ce + 2.5 * adv).Within(1e-4));
        Assert.That(model.Loss(clean, labels).Parts["adv"].item<float>(), Is.EqualTo(0).Within(1e-6));
    }

    [Test]
    public void WithoutDeepOrVisionPromptsFapIsCoOp()
    {
        using var clip = TinyClip();
        var options = new FapPromptLearnerOptions { Depth = 1, VisionPrompts = false, ContextLength = 4, LearnedSide = CompoundPromptSide.Text };
        using var fap = FapModel.Create(clip, Classes, options);
        using var coop = DefeatModel.Create(clip, Classes, new DefeatModelOptions { UseShield = false }, new PromptLearnerOptions { ContextInit = "a photo of a" });
        Assert.That(fap.PromptLearner.Context.allclose(((PromptLearner)coop.PromptLearner).Context, 0, 0), Is.True);
        Assert.That(fap.named_parameters().Select(p => p.name), Is.EqualTo(new[] { "prompt_learner.ctx" }));
        var images = rand([4, 1, 8, 8], generator: new Generator(8));
        Assert.That(fap.forward(images).allclose(coop.Logits(images, Branch.Clean), 1e-5, 1e-5), Is.True);
        // ... and still after both contexts move the same way.
        using (no_grad())
        {
            var step = randn([4, 32], generator: new Generator(9)).Times(0.3);
            fap.PromptLearner.Context.Plus_(step);
            ((PromptLearner)coop.PromptLearner).Context.Plus_(step);
        }
        Assert.That(fap.forward(images).allclose(coop.Logits(images, Branch.Clean), 1e-5, 1e-5), Is.True);
    }

    [Test]
    public void TrainsWithTheDefeatTrainerAndEvaluates()
    {
        var dir = Directory.CreateTempSubdirectory("defeat-fap-").FullName;
        try
        {
            using var clip = TinyClip();
            var g = new Generator(11);
            var images = cat([rand([4, 1, 8, 8], generator: g).Times(0.5), rand([4, 1, 8, 8], generator: g).Times(0.5).Plus(0.5)]).to_type(ScalarType.Float32);
            var labels = cat([zeros(4, dtype: ScalarType.Int64), ones(4, dtype: ScalarType.Int64)]);
            using var data = new LabeledImages(images, labels, ["sandal", "coat"]);
            using var model = FapModel.Create(clip, data.ClassNames, new FapPromptLearnerOptions { Depth = 3 });
            var backboneBefore = clip.parameters().Select(p => p.clone()).ToList();
            var before = model.TrainableState().ToDictionary(kv => kv.Key, kv => kv.Value.clone());

            var history = new DefeatTrainer(new DefeatTrainerOptions
            {
                Epochs = 1, WarmupEpochs = 0, BatchSize = 4, CheckpointDirectory = dir, Seed = 2,
            }).Train(model, data);

            Assert.That(history, Has.Count.EqualTo(1));
            // A data set with another class count is refused before any step, as for DEFEAT.
            using var three = new LabeledImages(images, labels, ["sandal", "coat", "bag"]);
            var mismatch = Assert.Throws<ArgumentException>(() => new DefeatTrainer(new DefeatTrainerOptions { Epochs = 1, WarmupEpochs = 0 }).Train(model, three))!;
            Assert.That(mismatch.ParamName, Is.EqualTo("trainSet"));
            Assert.That(mismatch.Message, Does.Contain("3 classes").And.Contain("built for 2 (sandal, coat)"));
            Assert.That(history[0].MeanParts.Keys, Is.EquivalentTo(new[] { "ce", "adv" }));
            Assert.That(double.IsFinite(history[0].MeanLoss), Is.True);
            foreach (var (b, now) in backboneBefore.Zip(clip.parameters()))
                Assert.That(now.allclose(b, 0, 0), Is.True);
            foreach (var (key, value) in model.TrainableState())
                Assert.That(value.allclose(before[key], 0, 0), Is.False, key);

            model.eval();
            var report = new RobustnessEvaluator(new RobustnessEvaluatorOptions
            {
                Epsilons = [4.0 / 255],
                AttackFactory = eps => new PgdAttack(PgdOptions.DefeatEvaluation(eps) with { Steps = 2 }),
            }).Evaluate(new EvaluationSubject("fap", model.Predictor()), data);
            Assert.That(report.Images, Is.EqualTo(8));
            Assert.That(report.ByEpsilon[0].RobustAccuracy, Is.InRange(0.0, report.CleanAccuracy));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
