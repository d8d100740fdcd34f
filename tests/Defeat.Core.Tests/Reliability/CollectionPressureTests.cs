using Defeat.Attacks;
using Defeat.Model;
using Defeat.Tests.Fakes;
using Defeat.Training;

namespace Defeat.Tests.Reliability;

/// <summary>
/// TorchSharp hands libtorch temporary Scalars that nothing keeps alive through the native call; a garbage collection
/// started by another thread can finalize one mid-call (a crash in Scalar::toFloat, or a wrong value). Library code
/// keeps its Scalars alive (<see cref="ScalarOps"/>), so DEFEAT training and attacks under a thread that collects
/// garbage without pause run to the end and give bit for bit the result of a quiet run (docs/reliability.md).
/// </summary>
[NonParallelizable]
public class CollectionPressureTests
{
    /// <summary>
    /// A thread that allocates and collects the youngest generation about every millisecond. The pause matters, and it
    /// must leave the core: a thread that collects without pause, or spins 50 microseconds between collections, starved
    /// the test thread in clean-clone runs on two busy cores (each collection waits for the test thread to stop).
    /// </summary>
    private sealed class Collector : IDisposable
    {
        private volatile bool _stop;
        private readonly Thread _thread;

        public Collector()
        {
            _thread = new Thread(() =>
            {
                while (!_stop)
                {
                    _ = new byte[1024];
                    GC.Collect(0);
                    Thread.Sleep(1);
                }
            }) { IsBackground = true, Name = "collector" };
            _thread.Start();
        }

        public void Dispose()
        {
            _stop = true;
            _thread.Join();
        }
    }

    /// <summary>Trains for <paramref name="steps"/> steps (one batch per epoch), then attacks; returns the weights and the images.</summary>
    private static float[] TrainAndAttack(int steps, CancellationToken cancellationToken = default)
    {
        using var scope = NewDisposeScope();
        using var model = TinyDefeat.Model();
        using var data = TinyDefeat.Data(4);
        new DefeatTrainer(new DefeatTrainerOptions
        {
            Epochs = steps, WarmupEpochs = 0, BatchSize = 4, LearningRate = 0.01, Seed = 3,
            Attack = PgdOptions.DefeatTraining(4.0 / 255) with { Steps = 2 },
        }).Train(model, data, cancellationToken: cancellationToken);
        model.eval();
        Tensor text;
        using (no_grad()) text = model.TextFeatures();
        using var classifier = model.AsClassifier(Branch.Fused, text);
        var adversarial = new PgdAttack(new PgdOptions { Epsilon = 4.0 / 255, StepSize = 1.0 / 255, Steps = 10, Seed = 5 })
            .Perturb(classifier, data.Images, data.Labels, cancellationToken);
        var weights = model.TrainableParameters().Select(p => p.detach().flatten()).Append(adversarial.flatten());
        return cat(weights.ToArray()).data<float>().ToArray();
    }

    [Test]
    public void TrainingAndAttacksUnderCollectionPressureMatchAQuietRun()
    {
        using var oneThread = new SingleThreaded();
        const int steps = 60;
        var quiet = TrainAndAttack(steps);
        // Before the library held its Scalars, this failed within a few hundred steps (docs/reliability.md).
        for (int run = 0; run < 3; run++)
        {
            float[] pressed;
            // A deadline, so that a starved run fails here instead of holding up the whole suite.
            using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            using (new Collector()) pressed = TrainAndAttack(steps, deadline.Token);
            Assert.That(pressed, Is.EqualTo(quiet), $"run {run} under collection pressure differs from the quiet run");
        }
    }
}
