using Defeat.Prompting;

namespace Defeat.Samples.FashionMnist;

/// <summary>Hand-written caption templates for pre-training (zero-shot and DEFEAT's text regulariser use <see cref="PromptTemplates.Default"/>).</summary>
public static class CaptionTemplates
{
    /// <summary>Templates the backbone's captions are drawn from during pre-training.</summary>
    public static IReadOnlyList<string> Pretraining { get; } =
    [
        PromptTemplates.Default, "a black and white photo of a {0}.", "a low resolution photo of a {0}.",
        "a picture of a {0}.", "an image of a {0}.", "a photo of the {0}.", "a grey photo of a {0}.",
        "a small photo of a {0}.", "a {0}.", "a product photo of a {0}.",
    ];
}
