namespace Defeat.Prompting;

/// <summary>Which side learns the compound prompts of the deeper layers of a <see cref="FapPromptLearner"/>; the other side gets them through a per-layer linear projection.</summary>
public enum CompoundPromptSide
{
    /// <summary>Vision prompts are learned and projected to the text width (FAP's official code).</summary>
    Vision,

    /// <summary>Text prompts are learned and projected to the vision width (MaPLe's official code).</summary>
    Text,
}
