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
/// evaluation attack), on the same small CNN and batch of Fashion-MNIST-sized images, float32, CPU, one torch thread.
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
    public const int Batch = 16;

    private Module<Tensor, Tensor> _model = null!;
    private Tensor _images = null!;
    private Tensor _labels = null!;

    /// <summary>Adds the operations-per-second column (images per second here).</summary>
    public sealed class ImagesPerSecond : ManualConfig
    {
        /// <summary>The column.</summary>
        public ImagesPerSecond() => AddColumn(StatisticColumn.OperationsPerSecond);
    }

    /// <summary>The model (a strided conv layer and a linear layer, 10 classes, random weights), a batch of 1x28x28 images and the
    /// model's own predictions as labels. Small on purpose: the whole suite at its full budget must fit a short job on 2 cores.</summary>
    [GlobalSetup]
    public void Setup()
    {
        // One intra-op thread: these are long runs of small kernels, and on a shared machine a second OpenMP thread
        // that loses its core makes the first spin; one thread keeps the ratios between attacks meaningful.
        torch.set_num_threads(1);
        Console.WriteLine($"// torch threads = {torch.get_num_threads()}");
        torch.manual_seed(1);
        _model = Sequential(
            ("conv", Conv2d(1, 8, 3, stride: 2, padding: 1)), ("relu", ReLU()),
            ("flatten", Flatten()), ("fc", Linear(8 * 14 * 14, 10)));
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
