namespace Defeat.Training;

/// <summary>Data augmentation applied to each training batch before the attack.</summary>
public enum Augmentation
{
    /// <summary>Images as they are.</summary>
    None,

    /// <summary>Random horizontal flip.</summary>
    Flip,

    /// <summary>Random crop after padding by an eighth of the side (reflect), then random horizontal flip:
    /// a cheap stand-in for the RandomResizedCrop + flip of the official runs.</summary>
    CropAndFlip,
}
