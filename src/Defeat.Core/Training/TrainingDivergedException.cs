namespace Defeat.Training;

/// <summary>
/// Training produced a loss or a gradient that is NaN or infinite, and <see cref="DefeatTrainer"/> stopped before the
/// optimiser applied it.
/// </summary>
/// <remarks>
/// An <see cref="InvalidOperationException"/>: the run, not an argument, went wrong (a learning rate too high for the
/// model, a loss that can overflow, bad data). The epoch in progress is not checkpointed, so the newest checkpoint in
/// <see cref="DefeatTrainerOptions.CheckpointDirectory"/> is the last epoch whose every step was finite; the model in
/// memory holds the weights after the last finite step.
/// </remarks>
public sealed class TrainingDivergedException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="epoch">1-based epoch in which the run diverged.</param>
    /// <param name="step">1-based step within that epoch.</param>
    /// <param name="runStep">1-based step counted over the whole run (as <see cref="TrainingProgress.Step"/>).</param>
    /// <param name="loss">The step's total loss (NaN or infinite when the loss itself diverged).</param>
    /// <param name="message">The full message; it starts "training diverged at epoch E, step S".</param>
    public TrainingDivergedException(int epoch, int step, int runStep, double loss, string message) : base(message)
    {
        Epoch = epoch;
        Step = step;
        RunStep = runStep;
        Loss = loss;
    }

    /// <summary>1-based epoch in which the run diverged.</summary>
    public int Epoch { get; }

    /// <summary>1-based step within <see cref="Epoch"/>.</summary>
    public int Step { get; }

    /// <summary>1-based step over the whole run, as <see cref="TrainingProgress.Step"/> counts it.</summary>
    public int RunStep { get; }

    /// <summary>The step's total loss.</summary>
    public double Loss { get; }
}
