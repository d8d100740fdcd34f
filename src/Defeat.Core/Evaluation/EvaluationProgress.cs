namespace Defeat.Evaluation;

/// <summary>Progress of an evaluation: the subject, the stage ("clean" or "eps=4/255 fused"...), and images done of the total.</summary>
public readonly record struct EvaluationProgress(string Subject, string Stage, long Done, long Total);
