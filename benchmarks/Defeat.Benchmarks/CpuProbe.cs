using System.Diagnostics;
using Defeat.Quantization;
using TorchSharp;

namespace Defeat.Benchmarks;

/// <summary>
/// <c>--probe-cpu</c>: process CPU time per call on ONE libtorch thread, the minimum over a few rounds, for
/// the bare matmul, the nearest-code kernel, the quantizer forward (no_grad) and forward+backward.
/// On a machine shared with other work, CPU time of a single thread is disturbed far less than wall
/// time of a multi-threaded run (no OpenMP barrier waiting for descheduled threads), so its ratios are
/// the steadier orientation; BenchmarkDotNet's wall-clock table stays the reference measurement.
/// </summary>
public static class CpuProbe
{
    /// <summary>Runs the probe over all shapes and prints per-call CPU times and ratios to the matmul.</summary>
    public static void Run()
    {
        torch.set_num_threads(1);
        Console.WriteLine($"// torch threads = {torch.get_num_threads()} (single-thread CPU-time probe)");
        foreach (var shape in QuantizerShape.All)
        {
            var bench = new QuantizerBenchmarks { Shape = shape };
            bench.Setup();
            torch.set_num_threads(1); // Setup pins to the core count; this probe wants one thread
            var codebook = bench.Codebook;
            long chunkRows = NearestCodeSearch.ChunkRows(shape.K, 4, VectorQuantizerOptions.DefaultMaxDistanceBytes);
            var names = new[] { "BareMatmul", "NearestCodeKernel", "Forward", "ForwardBackward" };
            var actions = new Action[]
            {
                () => bench.BareMatmul(),
                () => { using var s = torch.NewDisposeScope(); NearestCodeSearch.Find(bench.Input, codebook, QuantizerDistance.Euclidean, chunkRows); },
                () => bench.Forward(),
                () => bench.ForwardBackward(),
            };
            int reps = shape.K > 1000 ? 1 : 20;
            var best = Enumerable.Repeat(double.MaxValue, actions.Length).ToArray();
            foreach (var action in actions) action(); // warm-up
            for (int round = 0; round < 3; round++)
                for (int i = 0; i < actions.Length; i++)
                {
                    var before = Process.GetCurrentProcess().TotalProcessorTime;
                    for (int j = 0; j < reps; j++) actions[i]();
                    best[i] = Math.Min(best[i], (Process.GetCurrentProcess().TotalProcessorTime - before).TotalMilliseconds / reps);
                }
            Console.WriteLine($"{shape}: CPU ms per call (ratio to BareMatmul)");
            for (int i = 0; i < actions.Length; i++)
                Console.WriteLine($"  {names[i],-18} {best[i],10:F2} ms  {best[i] / best[0]:F2}x");
            bench.Cleanup();
        }
    }
}
