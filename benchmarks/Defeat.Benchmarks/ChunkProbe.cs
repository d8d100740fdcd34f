using System.Diagnostics;
using Defeat.Quantization;
using TorchSharp;

namespace Defeat.Benchmarks;

/// <summary>
/// Quick Stopwatch sweep (<c>--probe</c>) of the kernel's chunk size against the bare matmul, used to pick
/// the default <see cref="VectorQuantizerOptions.MaxDistanceBytes"/>. Not a BenchmarkDotNet run: medians of
/// a few repetitions, for orientation only.
/// </summary>
public static class ChunkProbe
{
    /// <summary>Runs the sweep and prints one line per shape and chunk bound.</summary>
    public static void Run()
    {
        TorchThreads.PinToCoreCount();
        long[] bounds = [1L << 20, 4L << 20, 16L << 20, 64L << 20];
        foreach (var shape in QuantizerShape.All)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var z = torch.randn(shape.M, shape.D);
            var e = torch.randn(shape.K, shape.D);
            var eT = e.t();
            int reps = shape.K > 1000 ? 2 : 8;
            var matmul = new List<double>();
            Console.WriteLine($"{shape}:");
            foreach (long bound in bounds)
            {
                long rows = NearestCodeSearch.ChunkRows(shape.K, 4, bound);
                using var vq = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = shape.K, Dim = shape.D, MaxDistanceBytes = bound });
                vq.eval();
                // Interleaved and the minimum over repetitions: the least disturbed run of each, on a busy machine.
                double kernel = double.MaxValue, forward = double.MaxValue, floor = double.MaxValue;
                for (int i = 0; i <= reps; i++)
                {
                    floor = Math.Min(floor, Time(() => { using var s = torch.NewDisposeScope(); torch.mm(z, eT); }));
                    kernel = Math.Min(kernel, Time(() => { using var s = torch.NewDisposeScope(); NearestCodeSearch.Find(z, e, QuantizerDistance.Euclidean, rows); }));
                    forward = Math.Min(forward, Time(() => { using var s = torch.NewDisposeScope(); vq.Quantize(z).Dispose(); }));
                }
                Console.WriteLine($"  chunk {bound >> 10,6} KB ({rows,6} rows): matmul {floor:F2} ms, kernel {kernel:F2} ms ({kernel / floor:F2}x), forward {forward:F2} ms ({forward / floor:F2}x)");
            }
        }
    }

    private static double Time(Action action)
    {
        var watch = Stopwatch.StartNew();
        action();
        return watch.Elapsed.TotalMilliseconds;
    }
}
