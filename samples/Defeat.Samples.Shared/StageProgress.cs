namespace Defeat.Samples.Shared;

/// <summary>Progress of one stage of the sample: its name, steps done and planned, and a message (for example the loss).</summary>
public readonly record struct StageProgress(string Stage, int Done, int Total, string Message = "");
