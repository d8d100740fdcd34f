using BenchmarkDotNet.Running;
using Defeat.Benchmarks;

// `--probe`: a quick Stopwatch sweep of the kernel's chunk size; anything else goes to BenchmarkDotNet
// (e.g. `--filter '*' --job short` for a few minutes, or `--filter '*'` for the full default job).
if (args.Length > 0 && args[0] == "--probe")
{
    ChunkProbe.Run();
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
