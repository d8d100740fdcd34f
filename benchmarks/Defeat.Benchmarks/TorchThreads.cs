using TorchSharp;

namespace Defeat.Benchmarks;

/// <summary>Pins libtorch's intra-op thread count to the machine's core count, explicitly.</summary>
public static class TorchThreads
{
    /// <summary>Sets <c>torch.set_num_threads(Environment.ProcessorCount)</c> (or <c>DEFEAT_TORCH_THREADS</c> when set), prints and
    /// returns the count in force.</summary>
    /// <remarks>One thread per core is the default. On a machine shared with other work, a run with <c>DEFEAT_TORCH_THREADS=1</c>
    /// keeps its ratios: a single thread slows down in proportion to its share of a core, while two threads wait for each
    /// other at every parallel region whenever either is descheduled.</remarks>
    public static int PinToCoreCount()
    {
        int wanted = int.TryParse(Environment.GetEnvironmentVariable("DEFEAT_TORCH_THREADS"), out int t) && t > 0 ? t : Environment.ProcessorCount;
        torch.set_num_threads(wanted);
        int threads = torch.get_num_threads();
        Console.WriteLine($"// torch threads = {threads} (Environment.ProcessorCount = {Environment.ProcessorCount})");
        return threads;
    }
}
