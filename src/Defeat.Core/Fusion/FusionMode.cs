namespace Defeat.Fusion;

/// <summary>How <see cref="LogitFusion"/> combines the two branches.</summary>
public enum FusionMode
{
    /// <summary><c>alpha * clean + (1 - alpha) * robust</c> on logits; alpha = 0.5 is the official implementation.</summary>
    LogitAverage,

    /// <summary>
    /// The paper's formula on probabilities, <c>alpha * softmax(clean) + (1 - alpha) * softmax(robust)</c>,
    /// returned as its logarithm (a valid log-probability vector), so cross-entropy and argmax work unchanged.
    /// </summary>
    ProbabilityAverage,

    /// <summary>Logit average with a trained weight <c>alpha = sigmoid(a)</c>, <c>a</c> a scalar parameter initialised to logit(Alpha).</summary>
    LearnableAlpha,

    /// <summary>
    /// Per-sample weights from each branch's confidence: <c>[w_clean, w_robust] = softmax([c_clean, c_robust] / T)</c>,
    /// then <c>w_clean * clean + w_robust * robust</c> on logits. The more confident branch leads for that sample.
    /// </summary>
    Adaptive,
}
