using BenchmarkDotNet.Attributes;
using Defeat.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Benchmarks;

/// <summary>
/// The official DEFEAT code's nearest-code search, <c>(z[:, None, :] - e[None]).pow(2).sum(-1).argmin(-1)</c>,
/// which forms an <c>[M, K, D]</c> tensor, at the first shape only (M=1568, D=256, K=512: 1.6 GB is
/// already formed), next to the bare matmul and the quantizer's kernel of the same shape.
/// </summary>
[MemoryDiagnoser]
public class BroadcastBaselineBenchmarks
{
    private static readonly QuantizerShape Shape = QuantizerShape.All[0];
    private Tensor _input = null!;
    private Tensor _codebook = null!;
    private Tensor _codebookT = null!;

    /// <summary>Builds the inputs once.</summary>
    [GlobalSetup]
    public void Setup()
    {
        TorchThreads.PinToCoreCount();
        var generator = new torch.Generator(1);
        _input = torch.randn(new long[] { Shape.M, Shape.D }, generator: generator).DetachFromDisposeScope();
        _codebook = torch.randn(new long[] { Shape.K, Shape.D }, generator: generator).DetachFromDisposeScope();
        _codebookT = _codebook.t().DetachFromDisposeScope();
    }

    /// <summary>Frees the native tensors.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _input.Dispose();
        _codebook.Dispose();
        _codebookT.Dispose();
    }

    /// <summary>Physical floor: <c>z @ e^T</c> at M=1568, D=256, K=512.</summary>
    [Benchmark(Baseline = true)]
    public long BareMatmul()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        return torch.mm(_input, _codebookT).shape[1];
    }

    /// <summary>The quantizer's kernel alone: chunked <c>addmm(|e|^2, z, e^T, 1, -2)</c> + argmin.</summary>
    [Benchmark]
    public long NearestCodeKernel()
    {
        using var scope = torch.NewDisposeScope();
        return NearestCodeSearch.Find(_input, _codebook, QuantizerDistance.Euclidean,
            NearestCodeSearch.ChunkRows(Shape.K, 4, VectorQuantizerOptions.DefaultMaxDistanceBytes)).shape[0];
    }

    /// <summary>The official broadcast search: forms <c>[M, K, D]</c> differences.</summary>
    [Benchmark]
    public long BroadcastDistance()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        return (_input.unsqueeze(1) - _codebook.unsqueeze(0)).Square().sum(-1).argmin(-1).shape[0];
    }
}
