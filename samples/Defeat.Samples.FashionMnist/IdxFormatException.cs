namespace Defeat.Samples.FashionMnist;

/// <summary>An IDX file (the MNIST family's format) is missing, truncated or not what was expected.</summary>
public sealed class IdxFormatException : Exception
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    public IdxFormatException(string path, string message, Exception? inner = null)
        : base($"{path}: {message}", inner) => Path = path;

    /// <summary>The file that could not be read.</summary>
    public string Path { get; }
}
