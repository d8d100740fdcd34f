using BenchmarkDotNet.Attributes;
using Defeat.Clip;
using Defeat.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Benchmarks;

/// <summary>
/// One L-inf PGD step on zero-shot CLIP logits (forward with autograd, input gradient of the summed
/// cross-entropy, sign step and projection onto the ball and [0, 1], as <c>PgdAttack</c> does per step),
/// against its floor: one square GEMM <c>[n, n] x [n, n]</c> of the same FLOPs (<see cref="StepFlops.AttackStep"/>)
/// into a preallocated output. Frozen weights, eval mode, float32, CPU.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(StepConfig))]
public class AttackStepBenchmarks
{
    private const int Classes = 10;
    private const double Epsilon = 4.0 / 255, StepSize = 1.0 / 255;
    private ClipModel _model = null!;
    private Tensor _text = null!, _clean = null!, _adv = null!, _labels = null!;
    private Tensor _a = null!, _b = null!, _c = null!;

    /// <summary>The model and batch.</summary>
    [ParamsSource(nameof(Cases))]
    public StepCase Case { get; set; } = null!;

    /// <summary>The shipped backbone at batch 32, 100 (the evaluator's default) and 250 (the run); ViT-B/32 at 2 and 4
    /// (larger batches outlast the in-process toolchain's time limit on the shared 2-core machine).</summary>
    public static IEnumerable<StepCase> Cases =>
        new[] { (BenchmarkModels.Shipped, 32), (BenchmarkModels.Shipped, 100), (BenchmarkModels.Shipped, 250),
                (BenchmarkModels.VitB32, 2), (BenchmarkModels.VitB32, 4) }
        .Select(c => new StepCase(c.Item1, c.Item2, StepFlops.AttackStep(BenchmarkModels.Config(c.Item1), c.Item2, Classes)));

    /// <summary>Builds the model, the images and the floor's matrices.</summary>
    [GlobalSetup]
    public void Setup()
    {
        TorchThreads.PinToCoreCount();
        // No dispose scope here: the model's parameters must outlive this method.
        _model = BenchmarkModels.Create(Case.Model);
        using (torch.no_grad())
        {
            _text = Case.Model == BenchmarkModels.Shipped
                ? _model.ClassTextFeatures(FashionMnist.ClassNames)
                : nn.functional.normalize(torch.randn(new long[] { Classes, _model.FeatureDim }, generator: new Generator(3)), dim: -1);
        }
        _clean = BenchmarkModels.Images(_model, Case.Batch);
        _adv = _clean.clone();
        _labels = torch.randint(0, Classes, new long[] { Case.Batch }, generator: new Generator(5));
        int n = Case.FloorSide;
        _a = torch.randn(new long[] { n, n }, generator: new Generator(11));
        _b = torch.randn(new long[] { n, n }, generator: new Generator(12));
        _c = torch.empty(n, n);
        Console.WriteLine($"// {Case}: {Case.Flops:E3} GEMM FLOPs per step; floor {n}^3 x 2 = {2.0 * n * n * n:E3}");
    }

    /// <summary>Frees the model and tensors.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var t in new[] { _text, _clean, _adv, _labels, _a, _b, _c }) t.Dispose();
        _model.Dispose();
    }

    /// <summary>The floor: one square GEMM of the step's FLOPs into a preallocated output.</summary>
    [Benchmark(Baseline = true)]
    public long GemmFloor()
    {
        using var noGrad = torch.no_grad();
        _c.addmm_(_a, _b, beta: 0, alpha: 1);
        return _c.shape[0];
    }

    /// <summary>One PGD step: forward, input gradient of the summed cross-entropy, sign step, projection.</summary>
    [Benchmark]
    public long PgdStep()
    {
        using var scope = torch.NewDisposeScope();
        Tensor gradient;
        using (torch.enable_grad())
        {
            var input = _adv.detach().requires_grad_(true);
            var logits = _model.ZeroShotLogits(input, _text);
            var loss = nn.functional.cross_entropy(logits, _labels, reduction: nn.Reduction.Sum);
            gradient = torch.autograd.grad(new[] { loss }, new[] { input })[0];
        }
        using (torch.no_grad())
        {
            var delta = (_adv.Plus(gradient.sign().Times(StepSize)) - _clean).Clamp(-Epsilon, Epsilon);
            _adv.copy_(_clean.Plus(delta).Clamp(0.0, 1.0));
        }
        return _adv.shape[0];
    }
}
