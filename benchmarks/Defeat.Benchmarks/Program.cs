using BenchmarkDotNet.Running;
using Defeat.Benchmarks;

// `--probe`: a quick wall-clock sweep of the kernel's chunk size; `--probe-cpu`: single-thread CPU-time
// ratios (steadier on a shared machine); `--profile MODEL BATCH` / `--profile-train`: op-by-op Stopwatch profile of
// one PGD step / one DEFEAT training step; `--ab`: interleaved A/B of the step's
// formulations; `--gemm`: GEMM rates. Anything else goes to BenchmarkDotNet
// (`--filter '*' --job short` for a few minutes, `--filter '*'` for the full default job).
if (args.Length > 0 && args[0] == "--probe")
{
    ChunkProbe.Run();
    return;
}
if (args.Length > 0 && args[0] == "--profile")
{
    StepProfile.RunAttack(args.Length > 1 ? args[1] : BenchmarkModels.Shipped, args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 250);
    return;
}
if (args.Length > 0 && args[0] == "--profile-vq")
{
    QuantizerProbe.Run();
    return;
}
if (args.Length > 0 && args[0] == "--ab")
{
    VariantProbe.Run();
    return;
}
if (args.Length > 0 && args[0] == "--gemm")
{
    StepProfile.RunGemm();
    return;
}
if (args.Length > 0 && args[0] == "--profile-train")
{
    StepProfile.RunTraining();
    return;
}
if (args.Length > 0 && args[0] == "--probe-cpu")
{
    CpuProbe.Run();
    return;
}
// The separate process BenchmarkDotNet generates and builds does not receive the libstdc++
// compatibility step of Defeat.Core.targets, so on Debian 12 libtorch would not load there:
// run the benchmarks in this (patched) process instead.
if (!args.Contains("--inProcess") && !args.Contains("-i"))
    args = [.. args, "--inProcess"];
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
