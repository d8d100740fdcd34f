namespace Defeat.Samples.Shared;

/// <summary>An <see cref="IProgress{T}"/> that reports on the caller's thread (<see cref="Progress{T}"/> posts to the
/// thread pool, so reports could arrive after the stage has ended or out of order).</summary>
/// <param name="report">What to do with each report.</param>
public sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    /// <inheritdoc/>
    public void Report(T value) => report(value);
}
