namespace Defeat.Prompting;

/// <summary>Where the class name's tokens sit relative to the learned context (CoOp).</summary>
public enum ClassTokenPosition
{
    /// <summary><c>[SOS] ctx_1..ctx_M name . [EOS]</c> (DEFEAT and the CoOp default).</summary>
    End,

    /// <summary><c>[SOS] ctx_1..ctx_{M/2} name ctx_{M/2+1}..ctx_M . [EOS]</c>.</summary>
    Middle,

    /// <summary><c>[SOS] name ctx_1..ctx_M . [EOS]</c>.</summary>
    Front,
}
