namespace Defeat.Fusion;

/// <summary>How <see cref="FusionMode.Adaptive"/> scores a branch's confidence on one sample.</summary>
public enum ConfidenceMeasure
{
    /// <summary>The largest softmax probability, in (0, 1].</summary>
    MaxProbability,

    /// <summary>Minus the entropy of the softmax distribution, in [-log(classes), 0].</summary>
    NegativeEntropy,
}
