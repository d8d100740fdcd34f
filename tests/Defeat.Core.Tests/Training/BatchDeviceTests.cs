using Defeat.Attacks;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Model;
using Defeat.Training;

namespace Defeat.Tests.Training;

/// <summary>
/// The trainer's and the evaluator's <c>Device</c> option: batches reach the model on that device, and on the
/// CPU (the only device these tests can count on) moving them changes nothing else.
/// </summary>
public class BatchDeviceTests
{
    private static LabeledImages Brightness(int perClass)
    {
        var g = new Generator(7);
        var dark = rand([perClass, 1, 4, 4], generator: g).Times(0.4);
        var bright = rand([perClass, 1, 4, 4], generator: g).Times(0.4).Plus(0.6);
        var labels = cat([zeros(perClass, dtype: ScalarType.Int64), ones(perClass, dtype: ScalarType.Int64)]);
        return new LabeledImages(cat([dark, bright]).to_type(ScalarType.Float32), labels, ["dark", "bright"]);
    }

    /// <summary>Wraps a classifier and records the device of every tensor the trainer hands it.</summary>
    private sealed class DeviceRecorder(LinearClassifier inner) : ITrainableClassifier
    {
        public List<string> Seen { get; } = [];

        public IEnumerable<TorchSharp.Modules.Parameter> TrainableParameters() => inner.TrainableParameters();
        public IReadOnlyDictionary<string, Tensor> TrainableState() => inner.TrainableState();
        public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state) => inner.LoadTrainableState(state);
        public void SetTraining(bool training) => inner.SetTraining(training);

        public Func<Tensor, Tensor> AttackTarget()
        {
            var target = inner.AttackTarget();
            return x =>
            {
                Seen.Add($"attack {x.device}");
                return target(x);
            };
        }

        public TrainingLoss Loss(Tensor images, Tensor labels)
        {
            Seen.Add($"loss {images.device} {labels.device}");
            return inner.Loss(images, labels);
        }
    }

    private static DefeatTrainerOptions Options(Device? device) => new()
    {
        Epochs = 2, BatchSize = 4, LearningRate = 0.5, WarmupEpochs = 0, Seed = 3, Device = device,
        Attack = PgdOptions.DefeatTraining(2.0 / 255),
    };

    [Test]
    public void TrainerMovesBatchesToTheDeviceAndOtherwiseTrainsTheSame()
    {
        using var data = Brightness(4);
        using var moved = new LinearClassifier(16, 2, seed: 1);
        using var plain = new LinearClassifier(16, 2, seed: 1);
        var recorder = new DeviceRecorder(moved);

        var withDevice = new DefeatTrainer(Options(CPU)).Train(recorder, data);
        var without = new DefeatTrainer(Options(null)).Train(plain, data);

        // 2 epochs x 2 batches of 4: one loss per batch, after the attack's calls.
        Assert.That(recorder.Seen.Count(s => s.StartsWith("loss", StringComparison.Ordinal)), Is.EqualTo(4));
        Assert.That(recorder.Seen.Count(s => s.StartsWith("attack", StringComparison.Ordinal)), Is.GreaterThanOrEqualTo(4));
        Assert.That(recorder.Seen.Where(s => s.StartsWith("loss", StringComparison.Ordinal)), Has.All.EqualTo("loss cpu cpu"));
        Assert.That(recorder.Seen.Where(s => s.StartsWith("attack", StringComparison.Ordinal)), Has.All.EqualTo("attack cpu"));
        Assert.That(withDevice.Select(e => e.MeanLoss), Is.EqualTo(without.Select(e => e.MeanLoss)));
        foreach (var (a, b) in moved.parameters().Zip(plain.parameters()))
            Assert.That(a.equal(b).all().item<bool>(), Is.True, "same seed, same weights whether or not batches are moved to the CPU");
    }

    [Test]
    public void EvaluatorMovesBatchesToTheDevice()
    {
        using var data = Brightness(3);
        var devices = new List<string>();
        Tensor Model(Tensor x)
        {
            devices.Add(x.device.ToString());
            // Class 1 when the mean brightness is above one half.
            var m = x.flatten(1).mean([1]);
            return stack([m.RSub(0.5f), m.Minus(0.5f)], 1);
        }
        var options = new RobustnessEvaluatorOptions
        {
            Epsilons = [2.0 / 255], BatchSize = 4, Device = CPU,
            AttackFactory = eps => new PgdAttack(PgdOptions.DefeatEvaluation(eps) with { Steps = 2 }),
        };
        var report = new RobustnessEvaluator(options).Evaluate(new EvaluationSubject("mean", Model), data);

        Assert.That(devices, Is.Not.Empty);
        Assert.That(devices, Has.All.EqualTo(CPU.ToString()));
        // Dark images are below 0.4 and bright ones above 0.6: a 2/255 attack cannot cross 0.5.
        Assert.That(report.CleanAccuracy, Is.EqualTo(1.0));
        Assert.That(report.ByEpsilon[0].RobustAccuracy, Is.EqualTo(1.0));
    }
}
