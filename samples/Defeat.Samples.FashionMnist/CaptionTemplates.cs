namespace Defeat.Samples.FashionMnist;

/// <summary>Hand-written caption templates: several for pre-training captions, one for zero-shot and DEFEAT's text regulariser.</summary>
public static class CaptionTemplates
{
    /// <summary>Templates the backbone's captions are drawn from during pre-training.</summary>
    public static IReadOnlyList<string> Pretraining { get; } =
    [
        "a photo of a {0}.", "a black and white photo of a {0}.", "a low resolution photo of a {0}.",
        "a picture of a {0}.", "an image of a {0}.", "a photo of the {0}.", "a grey photo of a {0}.",
        "a small photo of a {0}.", "a {0}.", "a product photo of a {0}.",
    ];

    /// <summary>The hand-written prompt of zero-shot classification (CLIP's "a photo of a {}.").</summary>
    public static IReadOnlyList<string> ZeroShot { get; } = ["a photo of a {0}."];
}
