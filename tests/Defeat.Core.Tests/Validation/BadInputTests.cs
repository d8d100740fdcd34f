using Defeat.Attacks;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Model;
using Defeat.Prompting;
using Defeat.Shield;
using Defeat.Tests.Fakes;
using Defeat.Training;
using Defeat.Validation;

namespace Defeat.Tests.Validation;

/// <summary>Bad input on the public entry points: each gets an ArgumentException naming the argument, what it got and what it expected.</summary>
public class BadInputTests
{
    private static readonly string[] Classes = { "cat", "dog", "red car", "bird" };

    private static DefeatModel Model(IReadOnlyList<string>? classes = null)
    {
        var backbone = new FakeBackbone(seed: 3);
        manual_seed(4);
        return DefeatModel.Create(backbone, classes ?? Classes, promptOptions: new PromptLearnerOptions { ContextLength = 4, Seed = 1 },
            shieldOptions: new PerturbShieldOptions { HiddenDim = 4, CodebookSize = 16 });
    }

    private static Tensor Images(int batch, int seed = 1) => rand(new long[] { batch, 3, 12, 12 }, generator: new Generator((ulong)seed));

    [Test]
    public void PixelRangeCheckNamesNaNInfinityAndTheRange()
    {
        var x = ScalarOps.Full([2, 3], 0.5f);
        x[1, 2] = tensor(float.NaN);
        var nan = Assert.Throws<ArgumentException>(() => TensorChecks.RequirePixelRange(x, "images"))!;
        Assert.That(nan.ParamName, Is.EqualTo("images"));
        Assert.That(nan.Message, Does.Contain("NaN").And.Contain("[0, 1]"));
        x[1, 2] = tensor(float.PositiveInfinity);
        Assert.That(Assert.Throws<ArgumentException>(() => TensorChecks.RequirePixelRange(x, "images"))!.Message, Does.Contain("infinite"));
        x[1, 2] = tensor(-0.25f);
        Assert.That(Assert.Throws<ArgumentException>(() => TensorChecks.RequirePixelRange(x, "images"))!.Message, Does.Contain("[-0.25, 0.5]"));
        x[1, 2] = tensor(1f);
        Assert.DoesNotThrow(() => TensorChecks.RequirePixelRange(x, "images"));
        Assert.DoesNotThrow(() => TensorChecks.RequirePixelRange(zeros(0, 3), "images"));
        var labels = Assert.Throws<ArgumentException>(() => TensorChecks.RequireLabels(tensor(new long[] { 0, 4 }), 2, "labels", 4))!;
        Assert.That(labels.Message, Does.Contain("[0, 3] for 4 classes").And.Contain("[0, 4]"));
    }

    [Test]
    public void AttackRefusesNonFinitePixelsAndWrongLabels()
    {
        var attack = new PgdAttack(new PgdOptions { Steps = 1 });
        Func<Tensor, Tensor> model = x => x.flatten(1)[.., ..2];
        var x = ScalarOps.Full([2, 1, 2, 2], 0.5f);
        x[0, 0, 1, 1] = tensor(float.NaN);
        var e1 = Assert.Throws<ArgumentException>(() => attack.Perturb(model, x, tensor(new long[] { 0, 1 })))!;
        Assert.That(e1.ParamName, Is.EqualTo("images"));
        Assert.That(e1.Message, Does.Contain("NaN"));
        x[0, 0, 1, 1] = tensor(float.NegativeInfinity);
        Assert.That(Assert.Throws<ArgumentException>(() => attack.Perturb(model, x, tensor(new long[] { 0, 1 })))!.Message, Does.Contain("infinite"));
        var e3 = Assert.Throws<ArgumentException>(() => attack.Perturb(model, ScalarOps.Full([2, 1, 2, 2], 0.5f), tensor(new[] { 0, 1 })))!;
        Assert.That(e3.Message, Does.Contain("int64 [2]").And.Contain("Int32"));
        var e4 = Assert.Throws<ArgumentException>(() => attack.Perturb(model, ScalarOps.Full([2, 1, 2, 2], 0.5, dtype: ScalarType.Int64), tensor(new long[] { 0, 1 })))!;
        Assert.That(e4.Message, Does.Contain("floating-point").And.Contain("Int64"));
        var metaLabels = empty(new long[] { 2 }, dtype: ScalarType.Int64, device: new Device(DeviceType.META));
        var e5 = Assert.Throws<ArgumentException>(() => attack.Perturb(model, ScalarOps.Full([2, 1, 2, 2], 0.5f), metaLabels))!;
        Assert.That(e5.ParamName, Is.EqualTo("labels"));
        Assert.That(e5.Message, Does.Contain("labels must be on cpu, the device of the images").And.Contain("meta"));
    }

    [Test]
    public void AttackOnAnEmptyBatchReturnsAnEmptyBatchWithoutCallingTheModel()
    {
        int calls = 0;
        var adversarial = new PgdAttack().Perturb(x => { calls++; return x.flatten(1); }, zeros(0, 1, 2, 2), zeros(0, dtype: ScalarType.Int64));
        Assert.That(adversarial.shape, Is.EqualTo(new long[] { 0, 1, 2, 2 }));
        Assert.That(calls, Is.EqualTo(0));
    }

    [Test]
    public void DefeatModelChecksChannelsSizeDtypeLabelRangeAndEmptyBatches()
    {
        using var model = Model();
        var channels = Assert.Throws<ArgumentException>(() => model.Logits(rand(2, 1, 12, 12)))!;
        Assert.That(channels.ParamName, Is.EqualTo("images"));
        Assert.That(channels.Message, Does.Contain("[B, 3, 12, 12]").And.Contain("[2, 1, 12, 12]"));
        Assert.That(Assert.Throws<ArgumentException>(() => model.Logits(rand(2, 3, 8, 8)))!.Message, Does.Contain("[2, 3, 8, 8]"));
        Assert.That(Assert.Throws<ArgumentException>(() => model.Logits(zeros(2, 3, 12, 12, dtype: ScalarType.Int32)))!.Message, Does.Contain("Int32"));
        var range = Assert.Throws<ArgumentException>(() => model.call(Images(2), tensor(new long[] { 1, 4 })))!;
        Assert.That(range.ParamName, Is.EqualTo("labels"));
        Assert.That(range.Message, Does.Contain("[0, 3] for 4 classes"));
        var empty = Assert.Throws<ArgumentException>(() => model.call(Images(0), zeros(0, dtype: ScalarType.Int64)))!;
        Assert.That(empty.Message, Does.Contain("empty batch"));
        // Logits of an empty batch are an empty [0, classes] tensor (documented).
        using var none = model.Logits(Images(0));
        Assert.That(none.shape, Is.EqualTo(new long[] { 0, 4 }));
    }

    [Test]
    public void ImagesOnAnotherDeviceAreRefusedNamingBothDevices()
    {
        using var model = Model();
        Tensor meta;
        try { meta = empty(new long[] { 2, 3, 12, 12 }, device: new Device(DeviceType.META)); }
        catch (Exception e) { Assert.Ignore($"This TorchSharp build has no meta device: {e.Message}"); return; }
        var e2 = Assert.Throws<ArgumentException>(() => model.Logits(meta))!;
        Assert.That(e2.Message, Does.Contain("the device of the model").And.Contain("meta"));
    }

    [Test]
    public void AClassListOfOneIsAllowedAndNoAttackCanChangeItsPrediction()
    {
        using var model = Model(["cat"]);
        model.eval();
        var x = Images(3);
        var y = zeros(3, dtype: ScalarType.Int64);
        using var logits = model.Logits(x);
        Assert.That(logits.shape, Is.EqualTo(new long[] { 3, 1 }));

        using var set = new LabeledImages(x, y, ["cat"]);
        var report = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = [8.0 / 255],
            AttackFactory = eps => new PgdAttack(PgdOptions.DefeatEvaluation(eps) with { Steps = 2 }),
        }).Evaluate(AdaptiveAttackSuite.Subject(model), set);
        // With one class every prediction is right, before and after any attack.
        Assert.That(report.CleanAccuracy, Is.EqualTo(1.0));
        Assert.That(report.ByEpsilon[0].RobustAccuracy, Is.EqualTo(1.0));
        // The margin loss has no other class to compare with: a clear error rather than NaN pixels.
        var margin = Assert.Throws<ArgumentException>(() => AttackObjectives.PerSample(logits, zeros(3, dtype: ScalarType.Int64), AttackLoss.Margin, false))!;
        Assert.That(margin.Message, Does.Contain("at least 2 classes").And.Contain("1"));
        Assert.That(AdaptiveAttackSuite.Attacks(model).Select(a => a.Name), Does.Not.Contain("pgd-margin/fused"));
    }

    [Test]
    public void LabeledImagesRefusesNaNAndOutOfRangePixels()
    {
        var x = ScalarOps.Full([2, 1, 2, 2], 0.5f);
        x[1, 0, 0, 0] = tensor(float.NaN);
        var e = Assert.Throws<ArgumentException>(() => new LabeledImages(x, zeros(2, dtype: ScalarType.Int64), ["a"]))!;
        Assert.That(e.ParamName, Is.EqualTo("images"));
        Assert.That(e.Message, Does.Contain("NaN"));
        var e2 = Assert.Throws<ArgumentException>(() => new LabeledImages(ScalarOps.Full([2, 1, 2, 2], 255f), zeros(2, dtype: ScalarType.Int64), ["a"]))!;
        Assert.That(e2.Message, Does.Contain("[255, 255]"));
        using var empty = new LabeledImages(zeros(0, 1, 2, 2), zeros(0, dtype: ScalarType.Int64), ["a"]);
        Assert.That(empty.Count, Is.EqualTo(0));
    }

    [Test]
    public void EvaluatorRefusesAModelWithAnotherClassCountAndPixelsSpoiledAfterConstruction()
    {
        using var model = Model();
        using var set = new LabeledImages(Images(2), tensor(new long[] { 0, 1 }), ["cat", "dog"]);
        var evaluator = new RobustnessEvaluator(new RobustnessEvaluatorOptions { Epsilons = [0.0] });
        var e = Assert.Throws<ArgumentException>(() => evaluator.Evaluate(AdaptiveAttackSuite.Subject(model), set))!;
        Assert.That(e.ParamName, Is.EqualTo("subject"));
        Assert.That(e.Message, Does.Contain("[B=2, classes=2]").And.Contain("[2, 4]"));

        set.Images[0, 0, 0, 0] = tensor(float.NaN);
        var spoiled = Assert.Throws<ArgumentException>(() => evaluator.Evaluate(new EvaluationSubject("s", x => x.flatten(1)[.., ..2]), set))!;
        Assert.That(spoiled.ParamName, Is.EqualTo("testSet"));
        Assert.That(spoiled.Message, Does.Contain("NaN"));
    }

    [Test]
    public void TrainerRefusesADataSetWithAnotherClassCount()
    {
        using var model = Model();
        using var set = new LabeledImages(Images(2), tensor(new long[] { 0, 1 }), ["cat", "dog"]);
        var e = Assert.Throws<ArgumentException>(() => new DefeatTrainer(new DefeatTrainerOptions { Epochs = 1, WarmupEpochs = 0 }).Train(model, set))!;
        Assert.That(e.ParamName, Is.EqualTo("trainSet"));
        Assert.That(e.Message, Does.Contain("2 classes").And.Contain("built for 4"));
        using var none = new LabeledImages(zeros(0, 3, 12, 12), zeros(0, dtype: ScalarType.Int64), Classes);
        Assert.That(Assert.Throws<ArgumentException>(() => new DefeatTrainer().Train(model, none))!.Message, Does.Contain("empty"));
    }

    [Test]
    public void CreateAndPromptLearnerRefuseEmptyOrBlankClassLists()
    {
        var backbone = new FakeBackbone(seed: 3);
        Assert.That(Assert.Throws<ArgumentException>(() => DefeatModel.Create(backbone, Array.Empty<string>()))!.Message, Does.Contain("at least one class name"));
        Assert.That(Assert.Throws<ArgumentException>(() => DefeatModel.Create(backbone, ["cat", ""]))!.Message, Does.Contain("classNames[1]"));
    }

    [Test]
    public void FusionRefusesLogitsOfAnotherDtype()
    {
        using var fusion = new Defeat.Fusion.LogitFusion();
        var e = Assert.Throws<ArgumentException>(() => fusion.Fuse(zeros(2, 3), zeros(2, 3, dtype: ScalarType.Float64)))!;
        Assert.That(e.ParamName, Is.EqualTo("robust"));
        Assert.That(e.Message, Does.Contain("Float32").And.Contain("Float64"));
    }
}
