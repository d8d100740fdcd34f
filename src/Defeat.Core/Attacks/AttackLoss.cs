namespace Defeat.Attacks;

/// <summary>The objective an attack maximises (per sample; the step uses the batch sum).</summary>
public enum AttackLoss
{
    /// <summary>Cross-entropy of the true class (untargeted) or minus the cross-entropy of the target class (targeted).</summary>
    CrossEntropy,

    /// <summary>
    /// Carlini-Wagner margin on logits z: untargeted <c>max_{i != y} z_i - z_y</c>, targeted
    /// <c>z_t - max_{i != t} z_i</c>. Unclamped, so it keeps pushing past the decision boundary.
    /// </summary>
    Margin,

    /// <summary>
    /// Difference of logits ratio (Croce and Hein, 2020): the margin divided by <c>z_pi1 - z_pi3</c>
    /// (untargeted) or <c>z_pi1 - (z_pi3 + z_pi4) / 2</c> (targeted), where <c>z_pi1 &gt;= z_pi2 &gt;= ...</c>
    /// are the sorted logits; invariant to the logits' shift and scale. Needs at least 3 (4 when targeted) classes.
    /// </summary>
    Dlr,
}
