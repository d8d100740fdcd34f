using Defeat.Model;
using Defeat.Attacks;
using Defeat.Data;
using Defeat.Prompting;
using Defeat.Quantization;
using Defeat.Shield;
using Defeat.Tests.Fakes;
using Defeat.Training;
using TorchSharp.Modules;
using static Defeat.Tests.Quantization.Reference;

namespace Defeat.Tests.Training;

/// <summary>The code-consistency loss inside DefeatModel and the trainer that feeds it the clean images.</summary>
public class CodeConsistencyTests
{
    private static readonly string[] Classes = { "cat", "dog", "red car", "bird" };

    private static (FakeBackbone Backbone, DefeatModel Model) Build(double weight)
    {
        var backbone = new FakeBackbone(seed: 3);
        manual_seed(4);
        var learner = new PromptLearner(backbone, Classes, new PromptLearnerOptions { ContextLength = 4, Seed = 1 });
        var shield = new PerturbShield(new PerturbShieldOptions
        {
            FeatureDim = 8, GridHeight = 3, GridWidth = 3, HiddenDim = 4, CodebookSize = 16,
            Quantizer = new VectorQuantizerOptions { CodebookSize = 16, Dim = 4, InitScale = 1.0, Seed = 2 },
        });
        return (backbone, new DefeatModel(backbone, learner, shield, options: new DefeatModelOptions { CodeConsistencyWeight = weight }));
    }

    private static Tensor Images(int batch, int seed) => rand(new long[] { batch, 3, 12, 12 }, generator: new Generator((ulong)seed));

    // mean((z_e(adv) - e_k(clean))^2) from the backbone's grids, the shield's encoder and a brute-force nearest code.
    private static Tensor ByHand(FakeBackbone backbone, DefeatModel model, Tensor adversarial, Tensor clean)
    {
        var shield = (PerturbShield)model.Shield!;
        Tensor Latents(Tensor images)
        {
            var grid = backbone.EncodeImage(images).GridFeatures;
            return shield.VqVae.Encode(grid.transpose(1, 2).reshape(images.shape[0], 8, 3, 3)).permute(0, 2, 3, 1).reshape(-1, 4);
        }
        var codebook = ((VectorQuantizer)shield.VqVae.Quantizer).Codebook.detach();
        var k = tensor(NearestEuclidean(Rows(Latents(clean).detach()), Rows(codebook)));
        return (Latents(adversarial) - codebook.index_select(0, k)).Square().mean();
    }

    private static Tensor Grad(Parameter p) => p.grad!.detach().clone();

    [Test]
    public void TheLossTermAndItsGradientMatchTheHandComputation()
    {
        using var scope = NewDisposeScope();
        var (backbone, model) = Build(weight: 2.0);
        var clean = Images(3, 1).requires_grad_(true);
        var adversarial = clean.detach().Plus(Images(3, 2).Minus(0.5).Times(0.3)).Clamp(0, 1);
        var y = tensor(new long[] { 0, 2, 3 });
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);

        using var plain = model.forward(adversarial, y);
        Assert.That(plain.CodeConsistencyLoss.item<float>(), Is.EqualTo(0f), "without the clean images the term is 0");
        plain.Total.backward();
        var encoderPlain = Grad(parameters["shield.vqvae.encoder.0.weight"]);
        var codebookPlain = Grad(parameters["shield.vqvae.vq_embedding.weight"]);
        model.zero_grad();

        using var output = model.forward(adversarial, y, clean);
        var expected = ByHand(backbone, model, adversarial, clean.detach());
        Assert.That(expected.item<float>(), Is.GreaterThan(0f));
        using (var cleanPass = model.forward(clean.detach(), y))
            Assert.That(cleanPass.Indices!.equal(output.Indices!).all().item<bool>(), Is.False,
                "some adversarial codes differ from the clean ones, so the target is not the adversarial image's own code");
        Assert.That(output.CodeConsistencyLoss.item<float>(), Is.EqualTo(expected.item<float>()).Within(1e-5));
        Assert.That(output.Total.item<float>(), Is.EqualTo(plain.Total.item<float>() + 2 * expected.item<float>()).Within(1e-4));
        output.Total.backward();
        var encoderWith = Grad(parameters["shield.vqvae.encoder.0.weight"]);
        Assert.That(Grad(parameters["shield.vqvae.vq_embedding.weight"]).equal(codebookPlain).all().item<bool>(), Is.True,
            "the term gives the codebook no gradient (its codewords are targets)");
        Assert.That(clean.grad, Is.Null, "no gradient reaches the clean images");
        model.zero_grad();

        expected.backward();
        var encoderHand = Grad(parameters["shield.vqvae.encoder.0.weight"]);
        Assert.That((encoderWith - encoderPlain - encoderHand.Times(2)).abs().max().item<float>(), Is.LessThan(1e-4f));
        Assert.That(encoderHand.abs().max().item<float>(), Is.GreaterThan(1e-4f));
    }

    [Test]
    public void WeightZeroIsTodaysObjective()
    {
        using var scope = NewDisposeScope();
        var (_, model) = Build(weight: 0);
        var clean = Images(2, 3);
        var adversarial = clean.Plus(0.1).Clamp(0, 1);
        var y = tensor(new long[] { 1, 3 });
        using var a = model.forward(adversarial, y);
        using var b = model.forward(adversarial, y, clean);
        Assert.That(b.Total.equal(a.Total).all().item<bool>(), Is.True);
        Assert.That(b.CodeConsistencyLoss.item<float>(), Is.EqualTo(0f));
        var parts = ((ITrainableClassifier)model).Loss(adversarial, y, clean).Parts;
        Assert.That(parts.Keys, Does.Not.Contain("consistency"));
    }

    [Test]
    public void BadArgumentsAreRefused()
    {
        using var scope = NewDisposeScope();
        var (_, model) = Build(weight: 1);
        var e = Assert.Throws<ArgumentException>(() => model.forward(Images(2, 1), tensor(new long[] { 0, 1 }), Images(3, 1)));
        Assert.That(e!.ParamName, Is.EqualTo("cleanImages"));
        Assert.That(e.Message, Does.Contain("[3, 3, 12, 12]"));
        var w = Assert.Throws<ArgumentOutOfRangeException>(() => new DefeatModelOptions { CodeConsistencyWeight = -1 }.Validate());
        Assert.That(w!.ParamName, Is.EqualTo("CodeConsistencyWeight"));
    }

    /// <summary>Records what the trainer passes to the three-argument loss.</summary>
    private sealed class Recording(LinearClassifier inner) : ITrainableClassifier
    {
        public List<(Tensor Adversarial, Tensor Clean)> Calls { get; } = [];
        public IEnumerable<Parameter> TrainableParameters() => inner.TrainableParameters();
        public IReadOnlyDictionary<string, Tensor> TrainableState() => inner.TrainableState();
        public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state) => inner.LoadTrainableState(state);
        public Func<Tensor, Tensor> AttackTarget() => inner.AttackTarget();
        public TrainingLoss Loss(Tensor images, Tensor labels) => throw new InvalidOperationException("the trainer should pass the clean images");

        public TrainingLoss Loss(Tensor images, Tensor labels, Tensor cleanImages)
        {
            Calls.Add((images.detach().clone().DetachFromDisposeScope(), cleanImages.detach().clone().DetachFromDisposeScope()));
            return inner.Loss(images, labels);
        }

        public void SetTraining(bool training) => inner.SetTraining(training);
    }

    [Test]
    public void TheTrainerPassesTheCleanImagesTheAttackStartedFrom()
    {
        var images = rand(new long[] { 6, 1, 2, 2 }, generator: new Generator(3));
        using var data = new LabeledImages(images, tensor(new long[] { 0, 1, 0, 1, 0, 1 }), ["a", "b"]);
        using var inner = new LinearClassifier(4, 2, seed: 1);
        var model = new Recording(inner);
        const double eps = 8.0 / 255;
        new DefeatTrainer(new DefeatTrainerOptions
        {
            Epochs = 1, WarmupEpochs = 0, BatchSize = 4, LearningRate = 0.1, Augmentation = Augmentation.None, Attack = PgdOptions.DefeatTraining(eps),
        }).Train(model, data);

        Assert.That(model.Calls, Has.Count.EqualTo(2));
        var rows = Rows(images.reshape(6, 4));
        var seen = new List<int>();
        foreach (var (adversarial, clean) in model.Calls)
        {
            Assert.That(clean.shape, Is.EqualTo(adversarial.shape));
            // Every clean image is a training image (no augmentation here), and the adversarial one lies in its ball.
            foreach (var row in Rows(clean.reshape(-1, 4)))
            {
                int index = Array.FindIndex(rows, r => r.SequenceEqual(row));
                Assert.That(index, Is.GreaterThanOrEqualTo(0));
                seen.Add(index);
            }
            var delta = (adversarial.to_type(ScalarType.Float64) - clean.to_type(ScalarType.Float64)).abs();
            Assert.That(delta.max().item<double>(), Is.LessThanOrEqualTo(eps).And.GreaterThan(0));
        }
        Assert.That(seen.Order(), Is.EqualTo(Enumerable.Range(0, 6)), "each training image once per epoch");
    }

    [Test]
    public void TheTrainerLogsTheConsistencyPartOfADefeatModel()
    {
        var (_, model) = Build(weight: 0.5);
        using var data = new LabeledImages(Images(8, 7), tensor(new long[] { 0, 1, 2, 3, 0, 1, 2, 3 }), Classes);
        var history = new DefeatTrainer(new DefeatTrainerOptions
        {
            Epochs = 1, WarmupEpochs = 0, BatchSize = 4, LearningRate = 0.01, Attack = PgdOptions.DefeatTraining(4.0 / 255),
        }).Train(model, data);
        Assert.That(history[0].MeanParts.Keys, Does.Contain("consistency"));
        Assert.That(history[0].MeanParts["consistency"], Is.GreaterThan(0));
    }
}
