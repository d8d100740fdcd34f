namespace Defeat.Samples.Clip;

/// <summary>A data set could not be read: a folder or file is missing, a class is empty, an image is unreadable or
/// a split file is malformed. The message names the path and what was expected there.</summary>
public sealed class DatasetException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="path">The folder or file at fault.</param>
    /// <param name="message">What was found and what was expected.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public DatasetException(string path, string message, Exception? inner = null) : base($"{path}: {message}", inner) => Path = path;

    /// <summary>The folder or file at fault.</summary>
    public string Path { get; }
}
