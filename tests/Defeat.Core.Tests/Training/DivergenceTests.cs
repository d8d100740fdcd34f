using Defeat.Model;
using Defeat.Attacks;
using Defeat.Checkpoints;
using Defeat.Data;
using Defeat.Training;
using TorchSharp.Modules;

namespace Defeat.Tests.Training;

/// <summary>A run whose loss (or gradient) turns NaN at a known step stops with <see cref="TrainingDivergedException"/>
/// and keeps the last good checkpoint.</summary>
public class DivergenceTests
{
    private string _dir = "";

    [SetUp]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("defeat-diverge-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    /// <summary>The linear classifier, except that its <paramref name="badCall"/>-th loss is NaN, or finite with a NaN gradient.</summary>
    private sealed class Diverging(LinearClassifier inner, int badCall, bool viaGradient) : ITrainableClassifier
    {
        private int _calls;

        public IEnumerable<Parameter> TrainableParameters() => inner.TrainableParameters();

        public IReadOnlyDictionary<string, Tensor> TrainableState() => inner.TrainableState();

        public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state) => inner.LoadTrainableState(state);

        public Func<Tensor, Tensor> AttackTarget() => inner.AttackTarget();

        public void SetTraining(bool training) => inner.SetTraining(training);

        public TrainingLoss Loss(Tensor images, Tensor labels)
        {
            var loss = inner.Loss(images, labels);
            if (++_calls != badCall) return loss;
            // sqrt(0 * w) is 0, but its gradient is inf * 0 = NaN: a finite loss with a non-finite gradient.
            var total = viaGradient
                ? loss.Total.Plus(inner.parameters().First().Times(0).sum().sqrt())
                : loss.Total.Times(float.NaN);
            return new TrainingLoss(total, loss.Parts);
        }
    }

    private static LabeledImages Brightness()
    {
        var g = new Generator(1);
        var dark = rand([16, 1, 4, 4], generator: g).Times(0.4);
        var bright = rand([16, 1, 4, 4], generator: g).Times(0.4).Plus(0.6);
        var labels = cat([zeros(16, dtype: ScalarType.Int64), ones(16, dtype: ScalarType.Int64)]);
        return new LabeledImages(cat([dark, bright]).to_type(ScalarType.Float32), labels, ["dark", "bright"]);
    }

    // 32 images in batches of 8: 4 steps per epoch, so the 7th loss is epoch 2, step 3.
    private static DefeatTrainerOptions Options(string? dir) => new()
    {
        Epochs = 3, BatchSize = 8, LearningRate = 0.5, WarmupEpochs = 0, Seed = 5,
        Attack = PgdOptions.DefeatTraining(2.0 / 255) with { Steps = 1 }, CheckpointDirectory = dir,
    };

    [TestCase(false, "the loss is NaN")]
    [TestCase(true, "gradient")]
    public void ANonFiniteStepStopsWithEpochAndStepAndKeepsTheLastGoodCheckpoint(bool viaGradient, string reason)
    {
        using var data = Brightness();
        using var inner = new LinearClassifier(16, 2, seed: 3);
        var model = new Diverging(inner, badCall: 7, viaGradient);
        var e = Assert.Throws<TrainingDivergedException>(() => new DefeatTrainer(Options(_dir)).Train(model, data))!;
        Assert.That(e, Is.InstanceOf<InvalidOperationException>());
        Assert.That((e.Epoch, e.Step, e.RunStep), Is.EqualTo((2, 3, 7)));
        Assert.That(e.Message, Does.StartWith("training diverged at epoch 2, step 3").And.Contain(reason).And.Contain("epoch-0001"));
        Assert.That(viaGradient ? double.IsFinite(e.Loss) : double.IsNaN(e.Loss), Is.True);

        // The bad step was never applied: every weight in memory is finite.
        Assert.That(inner.parameters().All(p => p.isfinite().all().item<bool>()), Is.True);

        // The newest checkpoint is epoch 1, equal to an uninterrupted one-epoch run, and nothing of epoch 2 was written.
        var store = new CheckpointStore(_dir);
        Assert.That(store.Epochs(), Is.EqualTo(new[] { 1 }));
        using var checkpoint = store.LoadLatest()!;
        using var reference = new LinearClassifier(16, 2, seed: 3);
        // Epoch 1's learning rate does not depend on the planned epoch count (no warm-up, cosine from 1).
        new DefeatTrainer(Options(null) with { Epochs = 1 }).Train(reference, data);
        foreach (var (key, value) in reference.TrainableState())
            Assert.That(checkpoint.Tensors["model." + key].data<float>().ToArray(), Is.EqualTo(value.data<float>().ToArray()), key);
    }
}
