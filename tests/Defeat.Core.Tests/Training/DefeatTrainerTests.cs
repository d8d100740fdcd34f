using Defeat.Attacks;
using Defeat.Checkpoints;
using Defeat.Data;
using Defeat.Training;

namespace Defeat.Tests.Training;

public class DefeatTrainerTests
{
    private string _dir = "";

    [SetUp]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("defeat-trainer-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    /// <summary>Two classes told apart by brightness: class 1 images are brighter.</summary>
    private static LabeledImages Brightness(int perClass, int seed)
    {
        var g = new Generator((ulong)seed);
        var dark = rand([perClass, 1, 4, 4], generator: g).Times(0.4);
        var bright = rand([perClass, 1, 4, 4], generator: g).Times(0.4).Plus(0.6);
        var labels = cat([zeros(perClass, dtype: ScalarType.Int64), ones(perClass, dtype: ScalarType.Int64)]);
        return new LabeledImages(cat([dark, bright]).to_type(ScalarType.Float32), labels, ["dark", "bright"]);
    }

    private DefeatTrainerOptions Options(int epochs, string? checkpoints = null) => new()
    {
        Epochs = epochs,
        BatchSize = 8,
        LearningRate = 0.5,
        WarmupEpochs = 0,
        Attack = PgdOptions.DefeatTraining(2.0 / 255),
        Seed = 5,
        CheckpointDirectory = checkpoints,
    };

    private static float[] Weights(LinearClassifier model) =>
        model.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();

    [Test]
    public void LearningRateScheduleIsWarmupThenCosine()
    {
        var o = new DefeatTrainerOptions { Epochs = 4, LearningRate = 0.002, WarmupEpochs = 1, WarmupLearningRate = 1e-5 };
        // cos(pi * e / 4) for e = 1, 2, 3 is sqrt(2)/2, 0, -sqrt(2)/2.
        Assert.That(o.LearningRateAt(0), Is.EqualTo(1e-5));
        Assert.That(o.LearningRateAt(1), Is.EqualTo(0.001 * (1 + Math.Sqrt(0.5))).Within(1e-15));
        Assert.That(o.LearningRateAt(2), Is.EqualTo(0.001).Within(1e-15));
        Assert.That(o.LearningRateAt(3), Is.EqualTo(0.001 * (1 - Math.Sqrt(0.5))).Within(1e-15));
    }

    [Test]
    public void TrainingOnAdversarialImagesLowersTheLoss()
    {
        using var data = Brightness(16, seed: 1);
        using var model = new LinearClassifier(16, 2, seed: 3);
        var history = new DefeatTrainer(Options(epochs: 6)).Train(model, data);
        Assert.That(history, Has.Count.EqualTo(6));
        Assert.That(history[^1].MeanLoss, Is.LessThan(history[0].MeanLoss * 0.5));
        Assert.That(history[^1].MeanParts["ce"], Is.EqualTo(history[^1].MeanLoss).Within(1e-6));
        Assert.That(model.training, Is.False, "left in evaluation mode");
    }

    [Test]
    public void SameSeedGivesBitIdenticalWeights()
    {
        using var data = Brightness(12, seed: 2);
        using var a = new LinearClassifier(16, 2, seed: 3);
        using var b = new LinearClassifier(16, 2, seed: 3);
        new DefeatTrainer(Options(3) with { Augmentation = Augmentation.CropAndFlip }).Train(a, data);
        new DefeatTrainer(Options(3) with { Augmentation = Augmentation.CropAndFlip }).Train(b, data);
        Assert.That(Weights(b), Is.EqualTo(Weights(a)));
    }

    [Test]
    public void ResumingFromACheckpointEqualsAnUninterruptedRun()
    {
        using var data = Brightness(12, seed: 2);
        using var straight = new LinearClassifier(16, 2, seed: 3);
        new DefeatTrainer(Options(3)).Train(straight, data);

        // Two epochs, then a new process (new model object) resumes for the third.
        using (var first = new LinearClassifier(16, 2, seed: 3))
            Assert.Throws<OperationCanceledException>(() =>
                new DefeatTrainer(Options(3, _dir)).Train(first, data, progress: new StopAfter(epoch: 2)));
        using var resumed = new LinearClassifier(16, 2, seed: 99); // other init: the checkpoint must overwrite it
        var history = new DefeatTrainer(Options(3, _dir)).Train(resumed, data);
        Assert.That(history.Select(h => h.Epoch), Is.EqualTo(new[] { 3 }));
        Assert.That(Weights(resumed), Is.EqualTo(Weights(straight)));
    }

    [Test]
    public void CancellationStopsAndLeavesAUsableCheckpoint()
    {
        using var data = Brightness(12, seed: 2);
        using var model = new LinearClassifier(16, 2, seed: 3);
        using var cts = new CancellationTokenSource();
        var progress = new Progress(p => { if (p.Epoch == 2 && p.Step == 4) cts.Cancel(); });
        Assert.Throws<OperationCanceledException>(() =>
            new DefeatTrainer(Options(4, _dir)).Train(model, data, progress: progress, cancellationToken: cts.Token));
        using var checkpoint = new CheckpointStore(_dir).LoadLatest()!;
        Assert.That(checkpoint.Epoch, Is.EqualTo(1));
        Assert.That(checkpoint.Tensors.Keys, Does.Contain("model.fc.weight").And.Contain("optimizer.momentum.0"));
        Assert.That(model.training, Is.False);
    }

    [Test]
    public void ResumeWithAnotherSeedIsRefused()
    {
        using var data = Brightness(8, seed: 2);
        using var model = new LinearClassifier(16, 2, seed: 3);
        Assert.Throws<OperationCanceledException>(() =>
            new DefeatTrainer(Options(2, _dir)).Train(model, data, progress: new StopAfter(epoch: 1)));
        var e = Assert.Throws<CheckpointException>(() => new DefeatTrainer(Options(2, _dir) with { Seed = 6 }).Train(model, data))!;
        Assert.That(e.Message, Does.Contain("seed 5").And.Contain("seed 6"));
    }

    [Test]
    public void OptionsOutOfRangeAreRejectedByName()
    {
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new DefeatTrainer(new DefeatTrainerOptions { Epochs = 0 }))!.ParamName,
            Is.EqualTo("Epochs"));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new DefeatTrainer(new DefeatTrainerOptions { Epochs = 2, WarmupEpochs = 2 }))!;
        Assert.That(e.Message, Does.Contain("[0, 1]"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new DefeatTrainer(new DefeatTrainerOptions { Momentum = 1 }))!.ParamName,
            Is.EqualTo("Momentum"));
    }

    /// <summary>Cancels cleanly at the first step of the epoch after <c>epoch</c>, as a kill between epochs would.</summary>
    private sealed class StopAfter(int epoch) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value)
        {
            if (value.Epoch > epoch) throw new OperationCanceledException();
        }
    }

    private sealed class Progress(Action<TrainingProgress> action) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => action(value);
    }
}
