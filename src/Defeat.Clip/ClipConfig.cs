using Defeat.Validation;

namespace Defeat.Clip;

/// <summary>
/// The sizes of an OpenAI CLIP model with a Vision Transformer image encoder, the same numbers the
/// reference <c>CLIP</c> constructor takes, plus the image normalisation that runs inside the model.
/// </summary>
/// <remarks>
/// <see cref="ViTB32"/>, <see cref="ViTB16"/> and <see cref="ViTL14"/> give the released models;
/// <see cref="Tiny"/> gives small models for samples and tests. Loaders infer a configuration from a
/// checkpoint's shapes (<see cref="Loading.ClipLoader"/>), so a checkpoint never needs one by hand.
/// </remarks>
public sealed record ClipConfig
{
    /// <summary>CLIP's per-channel RGB mean, applied to pixels in [0, 1].</summary>
    public static readonly IReadOnlyList<double> ClipRgbMean = [0.48145466, 0.4578275, 0.40821073];

    /// <summary>CLIP's per-channel RGB standard deviation.</summary>
    public static readonly IReadOnlyList<double> ClipRgbStd = [0.26862954, 0.26130258, 0.27577711];

    /// <summary>Grey-image mean: the average of CLIP's three channel means, so a grey image replicated to RGB
    /// is normalised about as CLIP would normalise it.</summary>
    public const double ClipGreyMean = (0.48145466 + 0.4578275 + 0.40821073) / 3;

    /// <summary>Grey-image standard deviation: the average of CLIP's three channel deviations.</summary>
    public const double ClipGreyStd = (0.26862954 + 0.26130258 + 0.27577711) / 3;

    /// <summary>Width <c>D</c> of the joint image-text feature space.</summary>
    public int EmbedDim { get; init; } = 512;

    /// <summary>Side of the square input image in pixels.</summary>
    public int ImageResolution { get; init; } = 224;

    /// <summary>Number of residual attention blocks in the image transformer.</summary>
    public int VisionLayers { get; init; } = 12;

    /// <summary>Width of the image transformer.</summary>
    public int VisionWidth { get; init; } = 768;

    /// <summary>Side of a square image patch in pixels (the patch convolution's kernel and stride).</summary>
    public int VisionPatchSize { get; init; } = 32;

    /// <summary>Attention heads of the image transformer; <c>null</c> means <c>VisionWidth / 64</c>, as CLIP does.</summary>
    public int? VisionHeads { get; init; }

    /// <summary>Number of image channels (3 for RGB, 1 for grey images).</summary>
    public int InputChannels { get; init; } = 3;

    /// <summary>Per-channel mean subtracted from pixels in [0, 1]; one value per input channel.</summary>
    public IReadOnlyList<double> ImageMean { get; init; } = ClipRgbMean;

    /// <summary>Per-channel standard deviation that pixels are divided by; one value per input channel.</summary>
    public IReadOnlyList<double> ImageStd { get; init; } = ClipRgbStd;

    /// <summary>Length of every token sequence (77 in CLIP).</summary>
    public int ContextLength { get; init; } = 77;

    /// <summary>Number of token embeddings (49,408 with CLIP's BPE vocabulary).</summary>
    public int VocabSize { get; init; } = 49408;

    /// <summary>Width of the text transformer.</summary>
    public int TextWidth { get; init; } = 512;

    /// <summary>Attention heads of the text transformer; <c>null</c> means <c>TextWidth / 64</c>, as CLIP does.</summary>
    public int? TextHeads { get; init; }

    /// <summary>Number of residual attention blocks in the text transformer.</summary>
    public int TextLayers { get; init; } = 12;

    /// <summary>Heads actually used by the image transformer.</summary>
    public int ResolvedVisionHeads => VisionHeads ?? Math.Max(1, VisionWidth / 64);

    /// <summary>Heads actually used by the text transformer.</summary>
    public int ResolvedTextHeads => TextHeads ?? Math.Max(1, TextWidth / 64);

    /// <summary>Patches per side of the image grid.</summary>
    public int GridSide => ImageResolution / VisionPatchSize;

    /// <summary>OpenAI's ViT-B/32: 224 px, 32 px patches (7x7 grid), width 768 x 12 layers, text 512 x 12, D = 512.</summary>
    public static ClipConfig ViTB32() => new();

    /// <summary>OpenAI's ViT-B/16: as <see cref="ViTB32"/> with 16 px patches (14x14 grid).</summary>
    public static ClipConfig ViTB16() => new() { VisionPatchSize = 16 };

    /// <summary>OpenAI's ViT-L/14: 224 px, 14 px patches, width 1024 x 24 layers, text 768 x 12, D = 768.</summary>
    public static ClipConfig ViTL14() => new()
    {
        EmbedDim = 768, VisionLayers = 24, VisionWidth = 1024, VisionPatchSize = 14, TextWidth = 768,
    };

    /// <summary>
    /// A small CLIP for samples and tests. The defaults fit the Fashion-MNIST sample: grey 28x28 images,
    /// 4x4 patches (a 7x7 grid, the same 49 patches as ViT-B/32 at 224 px), widths 128 with 2 heads.
    /// </summary>
    /// <param name="imageResolution">Side of the square image in pixels.</param>
    /// <param name="patchSize">Side of a patch in pixels.</param>
    /// <param name="inputChannels">1 for grey images (normalised with <see cref="ClipGreyMean"/> and
    /// <see cref="ClipGreyStd"/>), 3 for RGB (CLIP's mean and deviation).</param>
    /// <param name="width">Width of both transformers.</param>
    /// <param name="layers">Blocks in each transformer.</param>
    /// <param name="heads">Attention heads in each transformer.</param>
    /// <param name="embedDim">Width of the joint feature space.</param>
    /// <param name="vocabSize">Token embeddings; keep 49,408 to use CLIP's tokenizer.</param>
    /// <param name="contextLength">Tokens per sequence.</param>
    public static ClipConfig Tiny(int imageResolution = 28, int patchSize = 4, int inputChannels = 1, int width = 128,
        int layers = 2, int heads = 2, int embedDim = 128, int vocabSize = 49408, int contextLength = 77) => new()
    {
        EmbedDim = embedDim,
        ImageResolution = imageResolution,
        VisionLayers = layers,
        VisionWidth = width,
        VisionPatchSize = patchSize,
        VisionHeads = heads,
        InputChannels = inputChannels,
        ImageMean = inputChannels == 1 ? [ClipGreyMean] : ClipRgbMean,
        ImageStd = inputChannels == 1 ? [ClipGreyStd] : ClipRgbStd,
        ContextLength = contextLength,
        VocabSize = vocabSize,
        TextWidth = width,
        TextHeads = heads,
        TextLayers = layers,
    };

    /// <summary>Throws when an option is out of range or the options contradict each other.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    /// <exception cref="ArgumentException">Options do not fit together.</exception>
    public void Validate()
    {
        OptionChecks.AtLeast(EmbedDim, 1, nameof(EmbedDim));
        OptionChecks.AtLeast(ImageResolution, 1, nameof(ImageResolution));
        OptionChecks.AtLeast(VisionLayers, 1, nameof(VisionLayers));
        OptionChecks.AtLeast(VisionWidth, 1, nameof(VisionWidth));
        OptionChecks.AtLeast(VisionPatchSize, 1, nameof(VisionPatchSize));
        OptionChecks.AtLeast(InputChannels, 1, nameof(InputChannels));
        OptionChecks.AtLeast(ContextLength, 1, nameof(ContextLength));
        OptionChecks.AtLeast(VocabSize, 1, nameof(VocabSize));
        OptionChecks.AtLeast(TextWidth, 1, nameof(TextWidth));
        OptionChecks.AtLeast(TextLayers, 1, nameof(TextLayers));
        if (VisionHeads is { } vh) OptionChecks.AtLeast(vh, 1, nameof(VisionHeads));
        if (TextHeads is { } th) OptionChecks.AtLeast(th, 1, nameof(TextHeads));
        if (ImageResolution % VisionPatchSize != 0)
            throw new ArgumentException(
                $"{nameof(ImageResolution)} ({ImageResolution}) must be a multiple of {nameof(VisionPatchSize)} ({VisionPatchSize}).", nameof(ImageResolution));
        if (VisionWidth % ResolvedVisionHeads != 0)
            throw new ArgumentException(
                $"{nameof(VisionWidth)} ({VisionWidth}) must be divisible by the vision heads ({ResolvedVisionHeads}).", nameof(VisionHeads));
        if (TextWidth % ResolvedTextHeads != 0)
            throw new ArgumentException(
                $"{nameof(TextWidth)} ({TextWidth}) must be divisible by the text heads ({ResolvedTextHeads}).", nameof(TextHeads));
        if (ImageMean is null || ImageMean.Count != InputChannels)
            throw new ArgumentException(
                $"{nameof(ImageMean)} has {ImageMean?.Count ?? 0} values; expected one per input channel ({InputChannels}).", nameof(ImageMean));
        if (ImageStd is null || ImageStd.Count != InputChannels)
            throw new ArgumentException(
                $"{nameof(ImageStd)} has {ImageStd?.Count ?? 0} values; expected one per input channel ({InputChannels}).", nameof(ImageStd));
        foreach (var s in ImageStd)
            if (!(s > 0) || double.IsInfinity(s))
                throw new ArgumentOutOfRangeException(nameof(ImageStd), s, $"{nameof(ImageStd)} values must be positive and finite.");
        foreach (var m in ImageMean)
            if (double.IsNaN(m) || double.IsInfinity(m))
                throw new ArgumentOutOfRangeException(nameof(ImageMean), m, $"{nameof(ImageMean)} values must be finite.");
    }
}
