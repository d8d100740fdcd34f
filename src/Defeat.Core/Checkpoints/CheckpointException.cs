namespace Defeat.Checkpoints;

/// <summary>A checkpoint is missing, truncated, corrupted, or does not fit the model it is loaded into.</summary>
public sealed class CheckpointException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CheckpointException(string message, Exception? inner = null) : base(message, inner) { }
}
