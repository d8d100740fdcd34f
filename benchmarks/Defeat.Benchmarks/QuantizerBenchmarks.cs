using BenchmarkDotNet.Attributes;
using Defeat.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Benchmarks;

/// <summary>
/// VectorQuantizer forward (inference, no autograd) and forward+backward against the physical floor:
/// a bare <c>[M, D] x [D, K]</c> matmul of the same shape. float32, CPU.
/// </summary>
/// <remarks>
/// MemoryDiagnoser counts managed allocations only; libtorch's tensors live in native memory and
/// do not show there (the quantizer's extra native memory is bounded by MaxDistanceBytes per call).
/// </remarks>
[MemoryDiagnoser]
public class QuantizerBenchmarks
{
    private VectorQuantizer _quantizer = null!;
    private Tensor _input = null!;
    private Tensor _inputWithGrad = null!;
    private Tensor _outputGrad = null!;
    private Tensor _codebookT = null!;

    /// <summary>The input <c>[M, D]</c> (after <see cref="Setup"/>).</summary>
    public Tensor Input => _input;

    /// <summary>The quantizer's codebook <c>[K, D]</c> (after <see cref="Setup"/>).</summary>
    public Tensor Codebook => _quantizer.Codebook;

    /// <summary>The problem size.</summary>
    [ParamsSource(nameof(Shapes))]
    public QuantizerShape Shape { get; set; } = QuantizerShape.All[0];

    /// <summary>The shapes of the issue.</summary>
    public static IEnumerable<QuantizerShape> Shapes => QuantizerShape.All;

    /// <summary>Builds the quantizer and the inputs once per shape.</summary>
    [GlobalSetup]
    public void Setup()
    {
        TorchThreads.PinToCoreCount();
        _quantizer = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = Shape.K, Dim = Shape.D, InitScale = 1.0 });
        _quantizer.eval();
        var generator = new torch.Generator(1);
        _input = torch.randn(new long[] { Shape.M, Shape.D }, generator: generator).DetachFromDisposeScope();
        _inputWithGrad = _input.clone().requires_grad_(true).DetachFromDisposeScope();
        _outputGrad = torch.randn(new long[] { Shape.M, Shape.D }, generator: generator).DetachFromDisposeScope();
        _codebookT = _quantizer.Codebook.detach().t().DetachFromDisposeScope();
    }

    /// <summary>Frees the native tensors.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _quantizer.Dispose();
        _input.Dispose();
        _inputWithGrad.Dispose();
        _outputGrad.Dispose();
        _codebookT.Dispose();
    }

    /// <summary>Physical floor: <c>z @ e^T</c>, <c>[M, D] x [D, K]</c>, nothing else.</summary>
    [Benchmark(Baseline = true)]
    public long BareMatmul()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        return torch.mm(_input, _codebookT).shape[1];
    }

    /// <summary>Quantizer forward under no_grad (indices, codewords, losses, usage, perplexity).</summary>
    [Benchmark]
    public long Forward()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var output = _quantizer.Quantize(_input);
        return output.Indices.shape[0];
    }

    /// <summary>Forward with autograd, then backward of <c>sum(g * quantized) + codebook + commitment</c>.</summary>
    [Benchmark]
    public long ForwardBackward()
    {
        using var scope = torch.NewDisposeScope();
        _inputWithGrad.grad?.zero_();
        _quantizer.zero_grad();
        using var output = _quantizer.Quantize(_inputWithGrad);
        var loss = (output.Quantized * _outputGrad).sum().Plus(output.CodebookLoss).Plus(output.CommitmentLoss);
        loss.backward();
        return output.Indices.shape[0];
    }
}
