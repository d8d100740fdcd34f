using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using Defeat.Attacks;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Defeat.Benchmarks;

/// <summary>
/// Images per second of each AutoAttack component and of the whole standard suite, against PGD-100 (DEFEAT's
/// evaluation attack), on the same small CNN and batch of Fashion-MNIST-sized images, float32, CPU.
/// </summary>
/// <remarks>
/// The radius is 0, so no image is ever fooled and every attack spends its full published budget on every image:
/// the cost of evaluating a model that resists everything, the upper bound of a real run (where AutoAttack's later
/// attacks see only the survivors of the earlier ones). Each operation attacks the whole batch; BenchmarkDotNet counts
/// it as <see cref="Batch"/> operations, so the Op/s column reads images per second.
/// </remarks>
[Config(typeof(ImagesPerSecond))]
public class AttackBenchmarks
{
    /// <summary>Images per attacked batch.</summary>
    public const int Batch = 32;

    private Module<Tensor, Tensor> _model = null!;
    private Tensor _images = null!;
    private Tensor _labels = null!;

    /// <summary>Adds the operations-per-second column (images per second here).</summary>
    public sealed class ImagesPerSecond : ManualConfig
    {
        /// <summary>The column.</summary>
        public ImagesPerSecond() => AddColumn(StatisticColumn.OperationsPerSecond);
    }

    /// <summary>The model (two conv layers, 10 classes, random weights), a batch of 1x28x28 images and the model's own predictions as labels.</summary>
    [GlobalSetup]
    public void Setup()
    {
        TorchThreads.PinToCoreCount();
        torch.manual_seed(1);
        _model = Sequential(
            ("conv1", Conv2d(1, 8, 3, padding: 1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
            ("conv2", Conv2d(8, 16, 3, padding: 1)), ("relu2", ReLU()), ("pool2", MaxPool2d(2)),
            ("flatten", Flatten()), ("fc", Linear(16 * 7 * 7, 10)));
        _model.eval();
        _images = torch.rand(new long[] { Batch, 1, 28, 28 }, generator: new torch.Generator(2)).DetachFromDisposeScope();
        using (torch.no_grad()) _labels = _model.call(_images).argmax(1).DetachFromDisposeScope();
    }

    /// <summary>Frees the native tensors.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _model.Dispose();
        _images.Dispose();
        _labels.Dispose();
    }

    private long Attack(IAdversarialAttack attack)
    {
        using var scope = torch.NewDisposeScope();
        return attack.Perturb(_model, _images, _labels).shape[0];
    }

    /// <summary>PGD, 100 steps of eps/4 from a random start (DEFEAT's evaluation).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public long Pgd100() => Attack(new PgdAttack(PgdOptions.DefeatEvaluation(0)));

    /// <summary>APGD-CE, 100 iterations, 1 run.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public long ApgdCe() => Attack(AutoAttack.Stages(new AutoAttackOptions { Epsilon = 0 })[0].Attack);

    /// <summary>APGD-T, 100 iterations for each of 9 targets.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public long ApgdT() => Attack(AutoAttack.Stages(new AutoAttackOptions { Epsilon = 0 })[1].Attack);

    /// <summary>FAB-T, 100 iterations for each of 9 targets.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public long FabT() => Attack(AutoAttack.Stages(new AutoAttackOptions { Epsilon = 0 })[2].Attack);

    /// <summary>Square, 5,000 queries.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public long Square() => Attack(AutoAttack.Stages(new AutoAttackOptions { Epsilon = 0 })[3].Attack);

    /// <summary>The whole standard AutoAttack: the four above in a row.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public long AutoAttackStandard() => Attack(new AutoAttack(new AutoAttackOptions { Epsilon = 0 }));
}
