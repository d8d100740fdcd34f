using Defeat.Validation;
using static TorchSharp.torch;

namespace Defeat.Checkpoints;

/// <summary>
/// The library's one strict state-dict loader (trainable state, checkpoints, official DEFEAT weights, CLIP weights):
/// keys must match exactly and every shape must fit, every problem is named, and nothing is copied unless all fit.
/// </summary>
public static class StateDictCopy
{
    /// <summary>
    /// Every way <paramref name="source"/> fails to fit <paramref name="target"/>, one line each:
    /// <c>missing key 'k': expected shape [..]</c>, <c>wrong shape for 'k': expected [..], found [..]</c>,
    /// <c>unexpected key 'k': found shape [..]</c>. Empty when it fits.
    /// </summary>
    /// <param name="target">A module's <c>state_dict()</c>.</param>
    /// <param name="source">The saved state.</param>
    /// <param name="ignoredKeys">Keys of <paramref name="source"/> that are not weights (never reported as unexpected).</param>
    public static IReadOnlyList<string> Mismatches(IReadOnlyDictionary<string, Tensor> target, IReadOnlyDictionary<string, Tensor> source,
        IReadOnlyCollection<string>? ignoredKeys = null)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(source);
        var problems = new List<string>();
        foreach (var (key, value) in target)
        {
            if (!source.TryGetValue(key, out var saved))
                problems.Add($"missing key '{key}': expected shape {TensorChecks.Shape(value)}");
            else if (!saved.shape.SequenceEqual(value.shape))
                problems.Add($"wrong shape for '{key}': expected {TensorChecks.Shape(value)}, found {TensorChecks.Shape(saved)}");
        }
        foreach (var key in source.Keys.Where(k => !target.ContainsKey(k) && ignoredKeys?.Contains(k) != true).Order(StringComparer.Ordinal))
            problems.Add($"unexpected key '{key}': found shape {TensorChecks.Shape(source[key])}");
        return problems;
    }

    /// <summary>
    /// Copies <paramref name="source"/> into the tensors of <paramref name="target"/> (a module's
    /// <c>state_dict()</c>), converting dtype and device, without recording gradients.
    /// </summary>
    /// <param name="target">A module's <c>state_dict()</c>.</param>
    /// <param name="source">The saved state.</param>
    /// <param name="ignoredKeys">Keys of <paramref name="source"/> that are not weights.</param>
    /// <exception cref="ArgumentException">Keys are missing or unexpected, or shapes differ; the message lists each
    /// (see <see cref="Mismatches"/>). Nothing is copied then.</exception>
    public static void CopyInto(IReadOnlyDictionary<string, Tensor> target, IReadOnlyDictionary<string, Tensor> source,
        IReadOnlyCollection<string>? ignoredKeys = null)
    {
        var problems = Mismatches(target, source, ignoredKeys);
        if (problems.Count > 0)
            throw new ArgumentException($"The state does not fit the model ({problems.Count} problem(s)): {string.Join("; ", problems)}.", nameof(source));

        using var noGrad = no_grad();
        foreach (var (key, value) in target)
            value.copy_(source[key]);
    }
}
