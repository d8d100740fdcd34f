using Defeat.Model;
using BenchmarkDotNet.Attributes;
using Defeat.Attacks;
using Defeat.Clip;
using Defeat.Data;
using Defeat.Shield;
using Defeat.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Benchmarks;

/// <summary>
/// One DEFEAT training step as <c>DefeatTrainer</c> runs it (PGD-3 on the fused logits in eval mode, then the
/// loss in training mode, backward and an SGD step) on the shipped backbone with the official shield
/// (hidden width D/2, 512 codes), against the floor: one square GEMM of the step's FLOPs
/// (<see cref="StepFlops.TrainingStep"/>).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(StepConfig))]
public class TrainingStepBenchmarks
{
    private const int Steps = 3, Codes = 512;
    private ClipModel _backbone = null!;
    private DefeatModel _model = null!;
    private optim.Optimizer _optimizer = null!;
    private Tensor _images = null!, _labels = null!;
    private Tensor _a = null!, _b = null!, _c = null!;
    private ulong _seed;

    /// <summary>The shipped backbone at batch 32 (the samples' training batch).</summary>
    [ParamsSource(nameof(Cases))]
    public StepCase Case { get; set; } = null!;

    /// <summary>The cases.</summary>
    public static IEnumerable<StepCase> Cases
    {
        get
        {
            var config = BenchmarkModels.Config(BenchmarkModels.Shipped);
            yield return new StepCase(BenchmarkModels.Shipped, 32,
                StepFlops.TrainingStep(config, 32, FashionMnist.ClassNames.Count, Steps, config.EmbedDim / 2, Codes));
        }
    }

    /// <summary>Builds DEFEAT on the backbone, the optimiser, a batch and the floor's matrices.</summary>
    [GlobalSetup]
    public void Setup()
    {
        TorchThreads.PinToCoreCount();
        // No dispose scope here: the model's parameters must outlive this method.
        _backbone = BenchmarkModels.Create(Case.Model);
        torch.manual_seed(1);
        _model = DefeatModel.Create(_backbone, FashionMnist.ClassNames,
            shieldOptions: new PerturbShieldOptions { HiddenDim = _backbone.FeatureDim / 2, CodebookSize = Codes });
        _optimizer = optim.SGD(_model.TrainableParameters(), 0.002, momentum: 0.9, weight_decay: 5e-4);
        _images = BenchmarkModels.Images(_backbone, Case.Batch);
        _labels = torch.randint(0, FashionMnist.ClassNames.Count, new long[] { Case.Batch }, generator: new Generator(5));
        int n = Case.FloorSide;
        _a = torch.randn(new long[] { n, n }, generator: new Generator(11));
        _b = torch.randn(new long[] { n, n }, generator: new Generator(12));
        _c = torch.empty(n, n);
        Console.WriteLine($"// {Case}: {Case.Flops:E3} GEMM FLOPs per step; floor {n}^3 x 2 = {2.0 * n * n * n:E3}");
    }

    /// <summary>Frees everything.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var t in new[] { _images, _labels, _a, _b, _c }) t.Dispose();
        _optimizer.Dispose();
        _model.Dispose();
        _backbone.Dispose();
    }

    /// <summary>The floor: one square GEMM of the step's FLOPs into a preallocated output.</summary>
    [Benchmark(Baseline = true)]
    public long GemmFloor()
    {
        using var noGrad = torch.no_grad();
        _c.addmm_(_a, _b, beta: 0, alpha: 1);
        return _c.shape[0];
    }

    /// <summary>One training step: PGD-3 (eval mode), loss (training mode), backward, SGD step.</summary>
    [Benchmark]
    public double TrainingStep()
    {
        using var scope = torch.NewDisposeScope();
        ITrainableClassifier model = _model;
        model.SetTraining(false);
        var attack = new PgdAttack(PgdOptions.DefeatTraining(4.0 / 255) with { Seed = ++_seed });
        var adversarial = attack.Perturb(model.AttackTarget(), _images, _labels);
        model.SetTraining(true);
        var loss = model.Loss(adversarial, _labels);
        _optimizer.zero_grad();
        loss.Total.backward();
        _optimizer.step();
        model.SetTraining(false);
        return loss.Total.item<float>();
    }
}
