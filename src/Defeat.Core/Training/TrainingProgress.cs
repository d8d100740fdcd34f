namespace Defeat.Training;

/// <summary>Progress of training after one step.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Epochs">Planned epochs.</param>
/// <param name="Step">Steps done in all.</param>
/// <param name="TotalSteps">Steps planned in all.</param>
/// <param name="Loss">The step's total loss.</param>
/// <param name="LearningRate">The learning rate in force.</param>
public readonly record struct TrainingProgress(int Epoch, int Epochs, int Step, int TotalSteps, double Loss, double LearningRate);

/// <summary>The mean loss parts of one epoch.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="LearningRate">The epoch's learning rate.</param>
/// <param name="MeanLoss">Mean total loss over the epoch's steps.</param>
/// <param name="MeanParts">Mean of each named loss part.</param>
public sealed record EpochSummary(int Epoch, double LearningRate, double MeanLoss, IReadOnlyDictionary<string, double> MeanParts);
