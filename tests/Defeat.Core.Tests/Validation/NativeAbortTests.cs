using Defeat.Model;
using Defeat.Attacks;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Prompting;
using Defeat.Shield;
using Defeat.Tests.Fakes;
using Defeat.Tests.Training;
using Defeat.Training;

namespace Defeat.Tests.Validation;

/// <summary>
/// Inputs on which libtorch raises an error that TorchSharp does not catch (the process aborts with "terminate called
/// after throwing an instance of 'c10::Error'") or a raw native error: each must be a .NET exception naming the argument.
/// </summary>
/// <remarks>Before the checks, the tests marked "aborted the test host" killed the whole test run, so they cannot fail
/// politely without them; the abort was seen by running the same calls once without the checks (docs/reliability.md).</remarks>
public class NativeAbortTests
{
    private static Tensor Images(int batch) => rand(new long[] { batch, 3, 12, 12 }, generator: new Generator(1));

    private static Tensor Pixels => ScalarOps.Full([2, 1, 2, 2], 0.5f);

    private static Tensor TwoLabels => tensor(new long[] { 0, 1 });

    // Logits [B, 2] that depend on the pixels.
    private static Tensor Linear(Tensor x) => x.flatten(1)[.., ..2].Times(2);

    [Test]
    public void AttackOnAModelWhoseOutputNeedsNoGradientNamesTheModel()
    {
        // Aborted the test host: a constant, a model run under no_grad, and logits that ignore the images.
        var attack = new PgdAttack(new PgdOptions { Steps = 1 });
        var parameter = randn(1, 2).requires_grad_(true);
        var models = new (string Name, Func<Tensor, Tensor> Model, string Says)[]
        {
            ("constant", x => zeros(x.shape[0], 2), "does not require grad"),
            ("no_grad", x => { using var _ = no_grad(); return Linear(x); }, "does not require grad"),
            ("ignores the images", x => parameter.expand(x.shape[0], 2).Times(1), "do not depend on the images"),
        };
        foreach (var (name, model, says) in models)
        {
            var e = Assert.Throws<ArgumentException>(() => attack.Perturb(model, Pixels, TwoLabels), name)!;
            Assert.That(e.ParamName, Is.EqualTo("model"), name);
            Assert.That(e.Message, Does.Contain(says), name);
        }
        using var module = nn.Sequential(nn.Flatten(), nn.Linear(4, 2));
        using (no_grad())
        {
            // The module overload under an outer no_grad: the attack enables grad itself, so this works.
            Assert.That(attack.Perturb(module, Pixels, TwoLabels).shape, Is.EqualTo(Pixels.shape));
        }
    }

    [Test]
    public void EvaluatingAConstantSubjectNamesTheSubjectAndItsTarget()
    {
        // Aborted the test host.
        using var data = new LabeledImages(Pixels, TwoLabels, ["a", "b"]);
        var evaluator = new RobustnessEvaluator(new RobustnessEvaluatorOptions { Epsilons = [1.0 / 255] });
        var e = Assert.Throws<ArgumentException>(() => evaluator.Evaluate(new EvaluationSubject("constant", x => zeros(x.shape[0], 2)), data))!;
        Assert.That(e.ParamName, Is.EqualTo("subject"));
        Assert.That(e.Message, Does.Contain("\"fused\"").And.Contain("does not require grad"));
    }

    [Test]
    public void TextFeaturesOfAnotherWidthDtypeOrRowCountAreArgumentErrors()
    {
        // Width and dtype aborted the test host (matmul); the row count was checked before.
        using var model = TinyDefeat.Model();
        Tensor text;
        using (no_grad()) text = model.TextFeatures();
        Assert.That(text.shape, Is.EqualTo(new long[] { 4, 8 }));
        foreach (var (name, bad, says) in new[]
                 {
                     ("width", randn(4, 9), "[classes=4, D=8]"),
                     ("dtype", text.to(ScalarType.Float64), "Float32"),
                     ("rank", randn(4), "[classes=4, D=8]"),
                 })
        {
            foreach (var branch in new[] { Branch.Fused, Branch.Clean, Branch.Robust })
            {
                var e = Assert.Throws<ArgumentException>(() => model.Logits(Images(2), branch, bad), $"{name} {branch}")!;
                Assert.That(e.ParamName, Is.EqualTo("textFeatures"), $"{name} {branch}");
                Assert.That(e.Message, Does.Contain(says), $"{name} {branch}");
            }
        }
        var early = Assert.Throws<ArgumentException>(() => model.AsClassifier(Branch.Fused, randn(4, 9)))!;
        Assert.That(early.ParamName, Is.EqualTo("textFeatures"));
        Assert.That(model.Logits(Images(2), Branch.Fused, text).shape, Is.EqualTo(new long[] { 2, 4 }));
    }

    [Test]
    public void LabelsOutOfRangeAreArgumentErrorsEverywhereTheyEnter()
    {
        var losses = new[] { AttackLoss.CrossEntropy, AttackLoss.Margin, AttackLoss.Dlr };
        Func<Tensor, Tensor> threeClasses = x => x.flatten(1)[.., ..3].Times(2);
        foreach (var loss in losses)
            foreach (var labels in new[] { new long[] { 0, 3 }, new long[] { -1, 0 } })
            {
                var e = Assert.Throws<ArgumentException>(() =>
                    new PgdAttack(new PgdOptions { Steps = 1, Loss = loss }).Perturb(threeClasses, Pixels, tensor(labels)), $"{loss}")!;
                Assert.That(e.ParamName, Is.EqualTo("labels"), $"{loss}");
                Assert.That(e.Message, Does.Contain("[0, 2] for 3 classes"), $"{loss}");
            }
        // No steps: the labels meet the model only at the final scoring.
        Assert.That(Assert.Throws<ArgumentException>(() =>
            new PgdAttack(new PgdOptions { Steps = 0 }).Perturb(threeClasses, Pixels, tensor(new long[] { 0, 5 })))!.ParamName, Is.EqualTo("labels"));

        var logits = randn(2, 3);
        foreach (var loss in losses)
            Assert.That(Assert.Throws<ArgumentException>(() => AttackObjectives.PerSample(logits, tensor(new long[] { 0, 7 }), loss, false))!.ParamName,
                Is.EqualTo("labels"), $"{loss}");
        Assert.That(Assert.Throws<ArgumentException>(() => AttackObjectives.Success(logits, tensor(new long[] { 0, 7 }), false))!.ParamName,
            Is.EqualTo("labels"));

        // Labels written after the data set checked them, for the evaluator and the trainer.
        using var data = new LabeledImages(rand([4, 1, 4, 4], generator: new Generator(2)), tensor(new long[] { 0, 1, 0, 1 }), ["a", "b"]);
        data.Labels[2] = tensor(5L);
        var evaluation = Assert.Throws<ArgumentException>(() =>
            new RobustnessEvaluator(new RobustnessEvaluatorOptions { Epsilons = [1.0 / 255] })
                .Evaluate(new EvaluationSubject("linear", x => x.flatten(1)[.., ..2].Times(2)), data))!;
        Assert.That(evaluation.ParamName, Is.EqualTo("testSet"));
        Assert.That(evaluation.Message, Does.Contain("[0, 5]"));
        using var linear = new LinearClassifier(16, 2, seed: 3);
        var training = Assert.Throws<ArgumentException>(() => new DefeatTrainer(new DefeatTrainerOptions { Epochs = 1, WarmupEpochs = 0, BatchSize = 4 }).Train(linear, data))!;
        Assert.That(training.ParamName, Is.EqualTo("trainSet"));
        Assert.That(training.Message, Does.Contain("[0, 5]"));
    }

    [Test]
    public void ShieldChecksTheDtypeAndDeviceOfItsInput()
    {
        manual_seed(1);
        using var shield = new PerturbShield(new PerturbShieldOptions { FeatureDim = 8, GridHeight = 3, GridWidth = 3, HiddenDim = 4, CodebookSize = 16 });
        var dtype = Assert.Throws<ArgumentException>(() => shield.Shield(randn(new long[] { 2, 9, 8 }, dtype: ScalarType.Float64)))!;
        Assert.That(dtype.ParamName, Is.EqualTo("gridFeatures"));
        Assert.That(dtype.Message, Does.Contain("Float64").And.Contain("Float32"));
        var meta = empty(new long[] { 2, 9, 8 }, device: new Device(DeviceType.META));
        var device = Assert.Throws<ArgumentException>(() => shield.Shield(meta))!;
        Assert.That(device.ParamName, Is.EqualTo("gridFeatures"));
        Assert.That(device.Message, Does.Contain("meta"));
        Assert.That(shield.Shield(randn(2, 9, 8)).Projected.shape, Is.EqualTo(new long[] { 2, 8 }));
    }
}
