using Defeat.Validation;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Clip.Preprocessing;

/// <summary>
/// CLIP's image preprocessing without the normalisation (which lives inside <see cref="ClipModel"/>): resize the
/// short side to the model's resolution with bicubic interpolation and antialiasing, crop the centre square, and
/// keep pixel values in [0, 1].
/// </summary>
/// <remarks>
/// Files are decoded with SixLabors.ImageSharp and resized as tensors with <c>interpolate(bicubic, antialias)</c>,
/// the same filter as PIL's bicubic resize that the reference uses; the remaining difference (PIL's 8-bit
/// fixed-point arithmetic and rounding) is measured in the tests and documented in docs/clip.md.
/// </remarks>
public sealed class ClipPreprocessor
{
    /// <summary>The default <see cref="MaxPixels"/>: 50 megapixels.</summary>
    public const long DefaultMaxPixels = 50_000_000;

    private readonly long _maxPixels = DefaultMaxPixels;

    /// <summary>Side of the square output in pixels.</summary>
    public int ImageSize { get; }

    /// <summary>Output channels: 3 (RGB) or 1 (grey, ITU-R 601 luma as PIL's <c>convert("L")</c>).</summary>
    public int Channels { get; }

    /// <summary>
    /// The most pixels (width x height, read from the file's header) <see cref="LoadImage"/> decodes; a larger image is
    /// refused before any pixel buffer is allocated. Default <see cref="DefaultMaxPixels"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Not in [1, <see cref="int.MaxValue"/> / 3].</exception>
    public long MaxPixels
    {
        get => _maxPixels;
        init => _maxPixels = CheckBudget(value);
    }

    /// <summary>Creates a preprocessor.</summary>
    /// <param name="imageSize">Side of the square output.</param>
    /// <param name="channels">1 or 3.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size or channel count is out of range.</exception>
    public ClipPreprocessor(int imageSize, int channels = 3)
    {
        if (imageSize <= 0) throw new ArgumentOutOfRangeException(nameof(imageSize), imageSize, "imageSize must be positive.");
        if (channels is not (1 or 3)) throw new ArgumentOutOfRangeException(nameof(channels), channels, "channels must be 1 (grey) or 3 (RGB).");
        ImageSize = imageSize;
        Channels = channels;
    }

    /// <summary>A preprocessor for a model's input size and channels.</summary>
    /// <param name="model">The model.</param>
    public static ClipPreprocessor For(ClipModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new ClipPreprocessor(model.ImageSize, model.InputChannels);
    }

    /// <summary>
    /// Resizes (short side, bicubic, antialias) and centre-crops images; uint8 input is scaled by 1/255, the result is
    /// clamped to [0, 1] (bicubic overshoots slightly at edges).
    /// </summary>
    /// <param name="images"><c>[B, C, H, W]</c> or <c>[C, H, W]</c>, float in [0, 1] or uint8, with <see cref="Channels"/> channels.</param>
    /// <returns>Float32 <c>[B, C, ImageSize, ImageSize]</c> (or <c>[C, ...]</c> for a single image).</returns>
    /// <exception cref="ArgumentException">The shape or dtype is not an image batch.</exception>
    public Tensor Preprocess(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        bool single = images.dim() == 3;
        TensorChecks.Require(images, (images.dim() == 3 || images.dim() == 4) && images.shape[^3] == Channels
            && (images.is_floating_point() || images.dtype == ScalarType.Byte), nameof(images), $"float or uint8 [B, {Channels}, H, W] or [{Channels}, H, W]");
        using var scope = torch.NewDisposeScope();
        var x = single ? images.unsqueeze(0) : images;
        x = x.dtype == ScalarType.Byte ? x.to(ScalarType.Float32).Over(255.0) : x.to(ScalarType.Float32);
        long h = x.shape[2], w = x.shape[3];
        var (newH, newW) = ResizedSize(h, w, ImageSize);
        if (newH != h || newW != w)
            x = nn.functional.interpolate(x, size: [newH, newW], mode: InterpolationMode.Bicubic, align_corners: false, antialias: true);
        int top = (int)Math.Round((newH - ImageSize) / 2.0, MidpointRounding.ToEven);
        int left = (int)Math.Round((newW - ImageSize) / 2.0, MidpointRounding.ToEven);
        x = x[.., .., top..(top + ImageSize), left..(left + ImageSize)].Clamp(0.0, 1.0).contiguous();
        return (single ? x.squeeze(0) : x).MoveToOuterDisposeScope();
    }

    /// <summary>Decodes an image file (PNG, JPEG, BMP, GIF, ...) and preprocesses it to <c>[Channels, ImageSize, ImageSize]</c>.</summary>
    /// <param name="path">The image file.</param>
    public Tensor LoadImage(string path)
    {
        using var scope = torch.NewDisposeScope();
        return Preprocess(DecodeImage(path, Channels, MaxPixels)).MoveToOuterDisposeScope();
    }

    /// <summary>Decodes and preprocesses several image files into one batch <c>[B, Channels, ImageSize, ImageSize]</c>.</summary>
    /// <param name="paths">Image files.</param>
    /// <param name="cancellationToken">Stops between files.</param>
    public Tensor LoadImages(IEnumerable<string> paths, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(paths);
        using var scope = torch.NewDisposeScope();
        var list = new List<Tensor>();
        foreach (var p in paths)
        {
            cancellationToken.ThrowIfCancellationRequested();
            list.Add(LoadImage(p));
        }
        if (list.Count == 0) throw new ArgumentException("paths is empty; expected at least one image file.", nameof(paths));
        return torch.stack(list).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Decodes an image file into float pixels <c>[channels, H, W]</c> in [0, 1] at its own size. Grey output uses
    /// ITU-R 601 luma <c>(299 R + 587 G + 114 B) / 1000</c>, as PIL's <c>convert("L")</c>.
    /// </summary>
    /// <remarks>The header is read first (<c>Image.Identify</c>): an image over <paramref name="maxPixels"/> is refused
    /// without decoding, since a file of a few bytes can declare a 30000 x 30000 image.</remarks>
    /// <param name="path">The image file.</param>
    /// <param name="channels">1 or 3.</param>
    /// <param name="maxPixels">The most pixels (width x height) to decode.</param>
    /// <exception cref="ArgumentException">The file is not an image ImageSharp can decode (whatever the decoder threw is the
    /// inner exception), or it is larger than <paramref name="maxPixels"/>.</exception>
    /// <exception cref="IOException">The file cannot be opened.</exception>
    public static Tensor DecodeImage(string path, int channels = 3, long maxPixels = DefaultMaxPixels)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (channels is not (1 or 3)) throw new ArgumentOutOfRangeException(nameof(channels), channels, "channels must be 1 (grey) or 3 (RGB).");
        CheckBudget(maxPixels);
        var info = Decoding(path, () => Image.Identify(path) ?? throw new UnknownImageFormatException("no decoder recognises the file's header"));
        long pixels = (long)info.Width * info.Height;
        if (info.Width <= 0 || info.Height <= 0 || pixels > maxPixels)
            throw new ArgumentException($"'{path}' declares a {info.Width} x {info.Height} image ({pixels} pixels); expected at most " +
                $"{maxPixels} pixels (ClipPreprocessor.MaxPixels). It was not decoded.", nameof(path));
        var image = Decoding(path, () => Image.Load<Rgb24>(path));
        using (image)
        {
            int h = image.Height, w = image.Width;
            var data = new byte[checked(h * w * 3)];
            image.CopyPixelDataTo(data);
            using var scope = torch.NewDisposeScope();
            var rgb = torch.tensor(data, [h, w, 3], dtype: ScalarType.Byte).permute(2, 0, 1).to(ScalarType.Float32);
            Tensor result = channels == 3
                ? rgb.Over(255.0)
                : rgb[0].Times(299).Plus(rgb[1].Times(587)).Plus(rgb[2].Times(114)).Over(1000.0).unsqueeze(0).Over(255.0);
            return result.contiguous().MoveToOuterDisposeScope();
        }
    }

    // File-system errors stay what they are; anything a decoder throws on the file's content (format errors, but also
    // overflows and index errors on crafted files) means "not an image that can be decoded".
    private static T Decoding<T>(string path, Func<T> decode)
    {
        try
        {
            return decode();
        }
        catch (Exception e) when (e is not (IOException or UnauthorizedAccessException or OperationCanceledException))
        {
            throw new ArgumentException($"'{path}' is not an image that can be decoded: {e.Message}", nameof(path), e);
        }
    }

    private static long CheckBudget(long maxPixels)
    {
        if (maxPixels < 1 || maxPixels > int.MaxValue / 3)
            throw new ArgumentOutOfRangeException(nameof(maxPixels), maxPixels, $"Expected a pixel budget in [1, {int.MaxValue / 3}] (one RGB buffer).");
        return maxPixels;
    }

    /// <summary>Output size of resizing the short side to <paramref name="size"/> (torchvision's <c>Resize(int)</c> rule).</summary>
    internal static (long Height, long Width) ResizedSize(long h, long w, int size)
    {
        if (h <= w) return (size, (long)(size * (double)w / h));
        return ((long)(size * (double)h / w), size);
    }
}
