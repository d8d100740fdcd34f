namespace Defeat.Clip.Loading;

/// <summary>
/// A checkpoint could not be loaded: the file is of an unknown kind, truncated or corrupt, or its tensors do
/// not fit the model. The message names the file and lists every problem at once.
/// </summary>
public sealed class ClipCheckpointException : Exception
{
    /// <summary>The file being loaded, when there was one.</summary>
    public string? Path { get; }

    /// <summary>Each problem found, one line each (e.g. a missing key with its expected shape).</summary>
    public IReadOnlyList<string> Problems { get; }

    /// <summary>Creates the exception.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="path">The file, if any.</param>
    /// <param name="problems">Individual problems, listed in the message too.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public ClipCheckpointException(string message, string? path = null, IReadOnlyList<string>? problems = null, Exception? inner = null)
        : base(Compose(message, path, problems), inner)
    {
        Path = path;
        Problems = problems ?? [];
    }

    private static string Compose(string message, string? path, IReadOnlyList<string>? problems)
    {
        var head = path is null ? message : $"{message} (file: {path})";
        return problems is { Count: > 0 } ? head + Environment.NewLine + string.Join(Environment.NewLine, problems.Select(p => "  - " + p)) : head;
    }
}
