using TorchSharp;

namespace Defeat.Benchmarks;

/// <summary>Pins libtorch's intra-op thread count to the machine's core count, explicitly.</summary>
public static class TorchThreads
{
    /// <summary>Sets <c>torch.set_num_threads(Environment.ProcessorCount)</c>, prints and returns the count in force.</summary>
    public static int PinToCoreCount()
    {
        torch.set_num_threads(Environment.ProcessorCount);
        int threads = torch.get_num_threads();
        Console.WriteLine($"// torch threads = {threads} (Environment.ProcessorCount = {Environment.ProcessorCount})");
        return threads;
    }
}
