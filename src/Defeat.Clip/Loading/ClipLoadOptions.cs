using Defeat.Clip.Tokenization;

namespace Defeat.Clip.Loading;

/// <summary>
/// Options for <see cref="ClipLoader.Load"/>, <see cref="ClipLoader.LoadImageTower(ClipModel, string, ClipLoadOptions, Microsoft.Extensions.Logging.ILogger?)"/>
/// and <see cref="ClipLoader.ReadStateDict(string, ClipLoadOptions)"/>. The defaults suit OpenAI's and Hugging Face's
/// checkpoints and are the safe choice for a file from someone else: data-only formats, finite weights, bounded sizes.
/// </summary>
public sealed record ClipLoadOptions
{
    /// <summary>The default of <see cref="MaxPickleBytes"/>: 64 MiB (a ViT-L/14 state dict's pickle is about 56 KB).</summary>
    public const long DefaultMaxPickleBytes = 64L << 20;

    /// <summary>The default of <see cref="MaxPickleObjects"/>: 250,000 (a ViT-L/14 state dict's pickle pushes about 9,200 values).</summary>
    public const int DefaultMaxPickleObjects = 250_000;

    /// <summary>The default of <see cref="MaxNestingDepth"/>: 32 (TeCoA's checkpoints nest 2 deep, optimiser state 4).</summary>
    public const int DefaultMaxNestingDepth = 32;

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

    /// <summary>
    /// Whether TorchScript archives (<c>torch.jit.save</c>, e.g. OpenAI's released <c>ViT-B-32.pt</c>) may be loaded.
    /// Off by default: a TorchScript archive is a program, and <c>torch.jit.load</c> runs the code it carries (its
    /// <c>__setstate__</c> methods) with this process's rights. Turn it on only for a file you trust, or convert the
    /// file once to a state dict or safetensors (the refusal's message gives the Python line).
    /// </summary>
    public bool AllowTorchScript { get; init; }

    /// <summary>
    /// Whether weights that are NaN or infinite may be loaded. Off by default: the loader then throws a
    /// <see cref="ClipCheckpointException"/> listing each such tensor with its NaN, +inf and -inf counts.
    /// </summary>
    public bool AllowNonFiniteWeights { get; init; }

    /// <summary>
    /// The largest safetensors JSON header accepted, in bytes (default <see cref="SafetensorsFile.DefaultMaxHeaderBytes"/>,
    /// 16 MiB; the header of a ViT-L/14 file is about 52 KB). The header is parsed in memory, so this bounds the
    /// memory and time a hostile header can take.
    /// </summary>
    public long MaxSafetensorsHeaderBytes { get; init; } = SafetensorsFile.DefaultMaxHeaderBytes;

    /// <summary>The largest <c>data.pkl</c> of a <c>torch.save</c> file accepted, uncompressed, in bytes (default <see cref="DefaultMaxPickleBytes"/>).</summary>
    public long MaxPickleBytes { get; init; } = DefaultMaxPickleBytes;

    /// <summary>
    /// The most objects a <c>torch.save</c> file's pickle may create (dicts, lists, tuples, strings, numbers, tensor
    /// records; default <see cref="DefaultMaxPickleObjects"/>). Counted from the opcode stream before anything is
    /// built, so a small file cannot make the reader build millions of objects.
    /// </summary>
    public int MaxPickleObjects { get; init; } = DefaultMaxPickleObjects;

    /// <summary>How deep dicts of a <c>torch.save</c> file may nest (default <see cref="DefaultMaxNestingDepth"/>); the top-level dict is depth 1.</summary>
    public int MaxNestingDepth { get; init; } = DefaultMaxNestingDepth;

    /// <summary>Throws when an option is out of range.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A head count is not positive, or a limit is not positive.</exception>
    public void Validate()
    {
        if (VisionHeads is <= 0) throw new ArgumentOutOfRangeException(nameof(VisionHeads), VisionHeads, $"{nameof(VisionHeads)} must be positive or null.");
        if (TextHeads is <= 0) throw new ArgumentOutOfRangeException(nameof(TextHeads), TextHeads, $"{nameof(TextHeads)} must be positive or null.");
        if (MaxSafetensorsHeaderBytes <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxSafetensorsHeaderBytes), MaxSafetensorsHeaderBytes, $"{nameof(MaxSafetensorsHeaderBytes)} must be positive.");
        if (MaxPickleBytes <= 0) throw new ArgumentOutOfRangeException(nameof(MaxPickleBytes), MaxPickleBytes, $"{nameof(MaxPickleBytes)} must be positive.");
        if (MaxPickleObjects <= 0) throw new ArgumentOutOfRangeException(nameof(MaxPickleObjects), MaxPickleObjects, $"{nameof(MaxPickleObjects)} must be positive.");
        if (MaxNestingDepth <= 0) throw new ArgumentOutOfRangeException(nameof(MaxNestingDepth), MaxNestingDepth, $"{nameof(MaxNestingDepth)} must be positive.");
    }
}
