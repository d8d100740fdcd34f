namespace Defeat.Attacks;

/// <summary>The norm whose ball bounds an attack's perturbation.</summary>
public enum AttackNorm
{
    /// <summary>L-infinity: every pixel moves at most epsilon (signed-gradient steps).</summary>
    LInf,

    /// <summary>L2 over each image's pixels: the perturbation's Euclidean length is at most epsilon (normalised-gradient steps).</summary>
    L2,
}
