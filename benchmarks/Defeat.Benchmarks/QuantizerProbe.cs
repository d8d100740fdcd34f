using Defeat.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Benchmarks;

/// <summary>
/// <c>--profile-vq</c>: the quantizer's forward at the K = 512 shapes, op by op, next to the bare matmul: medians of
/// interleaved repetitions on the profile's clock (see <see cref="StepProfile"/>). Orientation only.
/// </summary>
public static class QuantizerProbe
{
    /// <summary>Runs the probe.</summary>
    public static void Run()
    {
        StepProfile.SetThreads();
        foreach (var shape in QuantizerShape.All.Where(s => s.K <= 1024))
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var bench = new QuantizerBenchmarks { Shape = shape };
            bench.Setup();
            StepProfile.SetThreads(); // Setup pins one thread per core
            var z = bench.Input;
            var e = bench.Codebook.detach();
            var eT = e.t();
            var eTc = eT.contiguous();
            var bias = e.Square().sum(1);
            var scores = torch.addmm(bias, z, eT, beta: 1, alpha: -2);
            var scoresT = torch.addmm(bias.unsqueeze(1), e, z.t(), beta: 1, alpha: -2);
            var indices = scores.min(1).indexes;
            var picked = e.index_select(0, indices);
            var buffer = torch.empty(shape.M, shape.K);
            var usage = torch.bincount(indices, minlength: shape.K);
            var products = torch.mm(z, eT);
            var found = torch.empty(shape.M, dtype: ScalarType.Int64);
            var ops = new (string Name, Action Run)[]
            {
                ("bare mm (fresh output) = 1.00", () => { using var s = torch.NewDisposeScope(); torch.mm(z, eT); }),
                ("mm into a preallocated buffer", () => buffer.addmm_(z, eT, beta: 0, alpha: 1)),
                ("mm with a contiguous e^T", () => { using var s = torch.NewDisposeScope(); torch.mm(z, eTc); }),
                ("e @ z^T ([K, M] scores)", () => { using var s = torch.NewDisposeScope(); torch.mm(e, z.t()); }),
                ("topk(1, smallest) of [M, K]", () => { using var s = torch.NewDisposeScope(); scores.topk(1, 1, largest: false); }),
                ("|e|^2 (square, sum)", () => { using var s = torch.NewDisposeScope(); e.Square().sum(1); }),
                ("addmm(|e|^2, z, e^T, 1, -2)", () => { using var s = torch.NewDisposeScope(); torch.addmm(bias, z, eT, beta: 1, alpha: -2); }),
                ("row min(1) of [M, K] (values + indices)", () => { using var s = torch.NewDisposeScope(); scores.min(1); }),
                ("row argmin(1) of [M, K]", () => { using var s = torch.NewDisposeScope(); scores.argmin(1); }),
                ("column min(0) of [K, M] (transposed scores)", () => { using var s = torch.NewDisposeScope(); scoresT.min(0); }),
                ("row amin(1) (values only)", () => { using var s = torch.NewDisposeScope(); scores.amin(1); }),
                ("RowArgMin of mm's [M, K] (bias folded in)", () => RowArgMin.Into(products, bias, found)),
                ("mm in cache-sized row chunks", () =>
                {
                    using var s = torch.NewDisposeScope();
                    long rows = NearestCodeSearch.CacheRows(shape.K, 4, long.MaxValue);
                    for (long start = 0; start < shape.M; start += rows)
                    {
                        using var c = torch.NewDisposeScope();
                        torch.mm(z.narrow(0, start, Math.Min(rows, shape.M - start)), eT);
                    }
                }),
                ("NearestCodeSearch.Find", () => { using var s = torch.NewDisposeScope(); NearestCodeSearch.Find(z, e, QuantizerDistance.Euclidean, NearestCodeSearch.ChunkRows(shape.K, 4, VectorQuantizerOptions.DefaultMaxDistanceBytes)); }),
                ("index_select codewords [M, D]", () => { using var s = torch.NewDisposeScope(); e.index_select(0, indices); }),
                ("mse_loss(z, e_picked)", () => { using var s = torch.NewDisposeScope(); nn.functional.mse_loss(z, picked); }),
                ("bincount(indices, K)", () => { using var s = torch.NewDisposeScope(); torch.bincount(indices, minlength: shape.K); }),
                ("CodebookUsage.Perplexity", () => { using var s = torch.NewDisposeScope(); CodebookUsage.Perplexity(usage); }),
                ("forward as before (addmm, min, index_select, mse_loss, ...)", () =>
                {
                    // The quantizer's no-gradient forward before RowArgMin and CodewordGather, op for op.
                    using var s = torch.NewDisposeScope();
                    var b = e.Square().sum(1);
                    var idx = torch.addmm(b, z, eT, beta: 1, alpha: -2).min(1).indexes;
                    var picked = e.index_select(0, idx);
                    nn.functional.mse_loss(z, picked).Times(0.25);
                    CodebookUsage.Perplexity(torch.bincount(idx, minlength: shape.K));
                }),
                ("VectorQuantizer forward (Benchmarks.Forward)", () => bench.Forward()),
            };
            var medians = StepProfile.InterleavedMedians(ops.Select(o => o.Run).ToList(), rounds: 41);
            Console.WriteLine($"{shape}: ms (ratio to the bare mm)");
            for (int i = 0; i < ops.Length; i++)
                Console.WriteLine($"  {ops[i].Name,-48} {medians[i],9:F3}  {medians[i] / medians[0]:F3}x");
            bench.Cleanup();
        }
    }
}
