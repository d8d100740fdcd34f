namespace Defeat.Samples.Clip;

/// <summary>How an <see cref="ImageFileDataset"/> lists folders and how large an image it agrees to decode.</summary>
public sealed record ImageFileDatasetOptions
{
    /// <summary>The default <see cref="MaxPixels"/>: 50 megapixels (an 8660 x 5773 photo; a CLIP input is 224 x 224).</summary>
    public const long DefaultMaxPixels = 50_000_000;

    private readonly long _maxPixels = DefaultMaxPixels;

    /// <summary>
    /// Follow symbolic links to folders when listing an image folder. Off by default: a linked folder is then skipped
    /// (and a linked class folder is an error). On, each folder is visited once by its resolved real path, so link loops
    /// end and no file is listed twice.
    /// </summary>
    public bool FollowDirectoryLinks { get; init; }

    /// <summary>
    /// The most pixels (width x height, read from the file's header before decoding) an image may have; a larger one is a
    /// <see cref="DatasetException"/> and is never decoded. Default <see cref="DefaultMaxPixels"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Not positive, or over <see cref="int.MaxValue"/> / 3 (one RGB buffer).</exception>
    public long MaxPixels
    {
        get => _maxPixels;
        init
        {
            if (value < 1 || value > int.MaxValue / 3)
                throw new ArgumentOutOfRangeException(nameof(MaxPixels), value, $"Expected a pixel budget in [1, {int.MaxValue / 3}] (one RGB buffer).");
            _maxPixels = value;
        }
    }
}
