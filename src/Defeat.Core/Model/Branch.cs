namespace Defeat.Model;

/// <summary>Which of DEFEAT's outputs a classifier view of <see cref="DefeatModel"/> returns.</summary>
public enum Branch
{
    /// <summary>The fused logits (what DEFEAT predicts with and is attacked through).</summary>
    Fused,

    /// <summary>The clean branch: class feature against the text features.</summary>
    Clean,

    /// <summary>The robust branch: PerturbShield's projected feature against the text features.</summary>
    Robust,
}
