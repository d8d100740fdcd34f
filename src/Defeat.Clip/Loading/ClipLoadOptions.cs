using Defeat.Clip.Tokenization;

namespace Defeat.Clip.Loading;

/// <summary>Options for <see cref="ClipLoader.Load"/>; the defaults suit OpenAI's and Hugging Face's checkpoints.</summary>
public sealed record ClipLoadOptions
{
    /// <summary>Image-transformer heads; <c>null</c> reads them from the file's metadata, else <c>width / 64</c> as CLIP does.</summary>
    public int? VisionHeads { get; init; }

    /// <summary>Text-transformer heads; <c>null</c> reads them from the file's metadata, else <c>width / 64</c>.</summary>
    public int? TextHeads { get; init; }

    /// <summary>Per-channel image mean; <c>null</c> uses the file's metadata, else CLIP's.</summary>
    public IReadOnlyList<double>? ImageMean { get; init; }

    /// <summary>Per-channel image standard deviation; <c>null</c> uses the file's metadata, else CLIP's.</summary>
    public IReadOnlyList<double>? ImageStd { get; init; }

    /// <summary>Tokenizer of the model; CLIP's when null.</summary>
    public ClipTokenizer? Tokenizer { get; init; }

    /// <summary>Throws when an option is out of range.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A head count is not positive.</exception>
    public void Validate()
    {
        if (VisionHeads is <= 0) throw new ArgumentOutOfRangeException(nameof(VisionHeads), VisionHeads, $"{nameof(VisionHeads)} must be positive or null.");
        if (TextHeads is <= 0) throw new ArgumentOutOfRangeException(nameof(TextHeads), TextHeads, $"{nameof(TextHeads)} must be positive or null.");
    }
}
