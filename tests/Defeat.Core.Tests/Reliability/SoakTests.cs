using System.Globalization;
using Defeat.Attacks;
using Defeat.Model;
using Defeat.Tests.Fakes;
using Defeat.Training;

namespace Defeat.Tests.Reliability;

/// <summary>
/// Native memory stays flat over many training steps and attack calls: the process RSS after a full GC,
/// sampled along the run, stays within 5% of its value after warm-up, and the number of live tensors does not grow.
/// </summary>
/// <remarks>
/// The count is <c>DEFEAT_SOAK_STEPS</c> (default 200, a few seconds each); the documented long run is
/// <c>DEFEAT_SOAK_STEPS=1000 dotnet test tests/Defeat.Core.Tests -c Release --filter "FullyQualifiedName~Soak"</c>
/// (docs/reliability.md). Each test prints its samples.
/// </remarks>
[NonParallelizable]
public class SoakTests
{
    private static int Steps =>
        int.TryParse(Environment.GetEnvironmentVariable("DEFEAT_SOAK_STEPS"), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 20 ? n : 200;

    /// <summary>RSS (bytes) and live tensors after collecting garbage, so finalisable wrappers do not count.</summary>
    private static (long Rss, long LiveTensors) Sample()
    {
        for (int i = 0; i < 2; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        return (Rss(), DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    private static long Rss()
    {
        // VmRSS from /proc on Linux; the working set elsewhere.
        if (File.Exists("/proc/self/status"))
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        process.Refresh();
        return process.WorkingSet64;
    }

    /// <summary>Samples at the end of warm-up (a fifth of the run) and at every tenth of the run after it.</summary>
    private sealed class Recorder(int steps)
    {
        private readonly int _warmup = Math.Max(1, steps / 5);
        private readonly int _every = Math.Max(1, steps / 10);
        public List<(int Step, long Rss, long Live)> Samples { get; } = new();

        public void After(int step)
        {
            if (step == _warmup || (step > _warmup && (step - _warmup) % _every == 0) || step == steps)
            {
                var (rss, live) = Sample();
                Samples.Add((step, rss, live));
            }
        }

        public void AssertFlat(string what)
        {
            var start = Samples[0];
            var end = Samples[^1];
            long max = Samples.Max(s => s.Rss);
            TestContext.Out.WriteLine($"{what}: {steps} steps; RSS after warm-up (step {start.Step}) {start.Rss / 1048576.0:F1} MiB, " +
                $"end {end.Rss / 1048576.0:F1} MiB, max {max / 1048576.0:F1} MiB ({100.0 * (max - start.Rss) / start.Rss:+0.0;-0.0}%); " +
                $"live tensors {start.Live} -> {end.Live}");
            TestContext.Out.WriteLine("  " + string.Join(" ", Samples.Select(s => $"{s.Step}:{s.Rss / 1048576.0:F1}")));
            Assert.That(Samples, Has.Count.GreaterThanOrEqualTo(5));
            Assert.That((double)max, Is.LessThanOrEqualTo(start.Rss * 1.05), $"{what}: RSS grew more than 5% after warm-up");
            Assert.That(end.Live, Is.LessThanOrEqualTo(start.Live), $"{what}: live tensors grew from {start.Live} to {end.Live}");
        }
    }

    private sealed class EveryStep(Action<TrainingProgress> action) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => action(value);
    }

    [Test]
    public void SoakTrainingStepsKeepNativeMemoryFlat()
    {
        int steps = Steps;
        using var oneThread = new SingleThreaded();
        using var model = TinyDefeat.Model();
        using var data = TinyDefeat.Data(4);
        var recorder = new Recorder(steps);
        // One step per epoch (the batch is the whole set), so Epochs = steps; a one-step attack keeps each step cheap.
        new DefeatTrainer(new DefeatTrainerOptions
        {
            Epochs = steps, WarmupEpochs = 0, BatchSize = 4, LearningRate = 0.01, Seed = 3,
            Attack = PgdOptions.DefeatTraining(4.0 / 255) with { Steps = 1 },
        }).Train(model, data, progress: new EveryStep(p => recorder.After(p.Step)));
        recorder.AssertFlat("training");
    }

    [Test]
    public void SoakAttackCallsKeepNativeMemoryFlat()
    {
        int steps = Steps;
        using var oneThread = new SingleThreaded();
        using var model = TinyDefeat.Model();
        model.eval();
        using var data = TinyDefeat.Data(4);
        Tensor text;
        using (no_grad()) text = model.TextFeatures();
        using var classifier = model.AsClassifier(Branch.Fused, text);
        var recorder = new Recorder(steps);
        for (int call = 1; call <= steps; call++)
        {
            var attack = new PgdAttack(new PgdOptions { Epsilon = 4.0 / 255, StepSize = 1.0 / 255, Steps = 2, Seed = (ulong)call });
            using (var adversarial = attack.Perturb(classifier, data.Images, data.Labels))
                Assert.That(adversarial.shape, Is.EqualTo(data.Images.shape));
            recorder.After(call);
        }
        recorder.AssertFlat("attack");
    }
}
