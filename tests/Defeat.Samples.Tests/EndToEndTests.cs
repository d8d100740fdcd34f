using Defeat.Attacks;
using Defeat.Checkpoints;
using Defeat.Clip;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Model;
using Defeat.Training;

namespace Defeat.Tests.Samples;

/// <summary>DEFEAT trained and evaluated through the public API on a tiny random CLIP.</summary>
public class EndToEndTests
{
    private string _dir = "";

    [SetUp]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("defeat-e2e-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    private static ClipModel TinyClip()
    {
        var clip = new ClipModel(ClipConfig.Tiny(imageResolution: 8, patchSize: 2, inputChannels: 1, width: 32, layers: 1, heads: 1, embedDim: 16));
        clip.InitializeParameters(seed: 3);
        return clip;
    }

    private static LabeledImages TwoClasses(int perClass)
    {
        var g = new Generator(11);
        var dark = rand([perClass, 1, 8, 8], generator: g).Times(0.5);
        var bright = rand([perClass, 1, 8, 8], generator: g).Times(0.5).Plus(0.5);
        var labels = cat([zeros(perClass, dtype: ScalarType.Int64), ones(perClass, dtype: ScalarType.Int64)]);
        return new LabeledImages(cat([dark, bright]).to_type(ScalarType.Float32), labels, ["sandal", "coat"]);
    }

    [Test]
    public void TinyRunTrainsOnlyTheDefeatPartsAndEvaluates()
    {
        using var clip = TinyClip();
        using var data = TwoClasses(perClass: 4);
        using var model = DefeatModel.Create(clip, data.ClassNames, shieldOptions: new Shield.PerturbShieldOptions { HiddenDim = 8, CodebookSize = 16 });
        var backboneBefore = clip.parameters().Select(p => p.clone()).ToList();
        var trainableBefore = model.TrainableStateDict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());

        var history = new DefeatTrainer(new DefeatTrainerOptions
        {
            Epochs = 1, WarmupEpochs = 0, BatchSize = 4, CheckpointDirectory = _dir, Seed = 2,
        }).Train(model, data);

        Assert.That(history, Has.Count.EqualTo(1));
        Assert.That(history[0].MeanParts.Keys, Is.SupersetOf(new[] { "ce", "align", "vqvae", "text_reg" }));
        Assert.That(double.IsFinite(history[0].MeanLoss), Is.True);
        // The backbone is frozen; the context, the VQ-VAE and W moved.
        foreach (var (before, now) in backboneBefore.Zip(clip.parameters()))
            Assert.That(now.allclose(before, 0, 0), Is.True);
        var after = model.TrainableStateDict();
        foreach (var key in new[] { "prompt_learner.ctx", "shield.cls_projection.linear.weight" })
        {
            Assert.That(after.ContainsKey(key), Is.True, key);
            Assert.That(after[key].allclose(trainableBefore[key], 0, 0), Is.False, key);
        }

        using var checkpoint = new CheckpointStore(_dir).LoadLatest()!;
        Assert.That(checkpoint.Epoch, Is.EqualTo(1));
        Assert.That(checkpoint.Tensors.Keys.Count(k => k.StartsWith("model.", StringComparison.Ordinal)), Is.EqualTo(after.Count));

        model.eval();
        var report = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = [4.0 / 255],
            AttackFactory = eps => new PgdAttack(PgdOptions.DefeatEvaluation(eps) with { Steps = 2 }),
        }).Evaluate(new EvaluationSubject("defeat", x => model.Logits(x, Branch.Fused)), data);
        Assert.That(report.Images, Is.EqualTo(8));
        // Accuracies are counts of 8 images; with one attack target the worst case is that target's accuracy.
        Assert.That(report.CleanAccuracy * 8, Is.EqualTo(Math.Round(report.CleanAccuracy * 8)).Within(1e-9));
        Assert.That(report.ByEpsilon[0].RobustAccuracy, Is.EqualTo(report.ByEpsilon[0].RobustAccuracyByTarget["fused"]));
        Assert.That(report.ByEpsilon[0].RobustAccuracy, Is.InRange(0.0, 1.0));
    }

    [Test]
    public void CheckpointOfAnotherClassCountIsRefusedWithTheShapes()
    {
        using var clip = TinyClip();
        using var two = DefeatModel.Create(clip, ["a", "b"], new DefeatModelOptions { UseShield = false },
            new Prompting.PromptLearnerOptions { ClassSpecificContext = true });
        using var three = DefeatModel.Create(clip, ["a", "b", "c"], new DefeatModelOptions { UseShield = false },
            new Prompting.PromptLearnerOptions { ClassSpecificContext = true });
        var e = Assert.Throws<ArgumentException>(() => three.LoadTrainableStateDict(two.TrainableStateDict()))!;
        Assert.That(e.Message, Does.Contain("prompt_learner.ctx").And.Contain("expected [3, 16, 32]").And.Contain("found [2, 16, 32]"));
    }
}
