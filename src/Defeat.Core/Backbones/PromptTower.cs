namespace Defeat.Backbones;

/// <summary>Which encoder of a vision-language backbone a deep prompt enters.</summary>
public enum PromptTower
{
    /// <summary>The text encoder: prompt tokens sit right after the start token, <c>[SOS] p_1..p_P ...</c>.</summary>
    Text,

    /// <summary>The image encoder: prompt tokens are appended after the patch tokens, <c>[CLS] patches p_1..p_P</c> (MaPLe's layout).</summary>
    Vision,
}
