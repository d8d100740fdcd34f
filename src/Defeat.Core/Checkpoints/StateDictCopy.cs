using static TorchSharp.torch;

namespace Defeat.Checkpoints;

/// <summary>Copies a saved state into a module's state dict, strictly: every problem is named in one error.</summary>
public static class StateDictCopy
{
    /// <summary>
    /// Copies <paramref name="source"/> into the tensors of <paramref name="target"/> (a module's
    /// <c>state_dict()</c>), converting dtype and device, without recording gradients.
    /// </summary>
    /// <exception cref="ArgumentException">Keys are missing or unexpected, or shapes differ; the message lists each
    /// key with the expected and the found shape. Nothing is copied then.</exception>
    public static void CopyInto(IReadOnlyDictionary<string, Tensor> target, IReadOnlyDictionary<string, Tensor> source)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(source);
        var problems = new List<string>();
        foreach (var (key, value) in target)
        {
            if (!source.TryGetValue(key, out var saved))
                problems.Add($"missing {key} (expected [{Shape(value)}])");
            else if (!saved.shape.SequenceEqual(value.shape))
                problems.Add($"{key}: expected [{Shape(value)}], found [{Shape(saved)}]");
        }
        foreach (var key in source.Keys.Where(k => !target.ContainsKey(k)).Order(StringComparer.Ordinal))
            problems.Add($"unexpected {key} (found [{Shape(source[key])}])");
        if (problems.Count > 0)
            throw new ArgumentException($"The state does not fit the model ({problems.Count} problem(s)): {string.Join("; ", problems)}.", nameof(source));

        using var noGrad = no_grad();
        foreach (var (key, value) in target)
            value.copy_(source[key]);
    }

    private static string Shape(Tensor t) => string.Join(", ", t.shape);
}
