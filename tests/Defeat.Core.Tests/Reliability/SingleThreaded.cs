namespace Defeat.Tests.Reliability;

/// <summary>
/// Runs torch's CPU kernels on one thread until disposed, then restores the previous count. On a loaded
/// 2-core machine, tiny kernels spend most of their time waiting for the second intra-op thread; one thread
/// makes the long loops of the soak tests about five times faster. Results are the same either way on these sizes.
/// </summary>
internal sealed class SingleThreaded() : TorchThreadCount(1);

/// <summary>Runs torch's CPU kernels on the given number of threads until disposed, then restores the previous count.</summary>
internal class TorchThreadCount : IDisposable
{
    private readonly int _previous = get_num_threads();

    public TorchThreadCount(int threads) => set_num_threads(threads);

    public void Dispose() => set_num_threads(_previous);
}
