using Defeat.Data;
using static TorchSharp.torch;

namespace Defeat.Samples.Clip;

/// <summary>One labelled image file of an <see cref="ImageFileDataset"/>.</summary>
/// <param name="Path">Full path of the image file.</param>
/// <param name="Label">Class index into <see cref="ImageFileDataset.ClassNames"/>.</param>
public sealed record ImageFile(string Path, long Label);

/// <summary>
/// A labelled list of image files, read from an image folder (one sub-folder per class) or from a CoOp split file.
/// Listing touches no pixels; <see cref="Load"/> decodes only the files asked for, through the caller's decoder
/// (for CLIP, <c>ClipPreprocessor.LoadImage</c>).
/// </summary>
public sealed class ImageFileDataset
{
    /// <summary>File extensions (lower case) counted as images in an image folder.</summary>
    public static IReadOnlySet<string> ImageExtensions { get; } =
        new HashSet<string>(StringComparer.OrdinalIgnoreCase) { ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff" };

    /// <summary>Creates a data set from its parts.</summary>
    /// <param name="classNames">Class names in label order.</param>
    /// <param name="files">The files; every label must index <paramref name="classNames"/>.</param>
    /// <exception cref="ArgumentException">A label is out of range.</exception>
    public ImageFileDataset(IReadOnlyList<string> classNames, IReadOnlyList<ImageFile> files)
    {
        ArgumentNullException.ThrowIfNull(classNames);
        ArgumentNullException.ThrowIfNull(files);
        foreach (var f in files)
            if (f.Label < 0 || f.Label >= classNames.Count)
                throw new ArgumentException($"{f.Path} has label {f.Label}; expected a label in [0, {classNames.Count - 1}].", nameof(files));
        ClassNames = classNames;
        Files = files;
    }

    /// <summary>Class names in label order.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>The image files with their labels.</summary>
    public IReadOnlyList<ImageFile> Files { get; }

    /// <summary>The label of every file, in file order.</summary>
    public long[] Labels() => Files.Select(f => f.Label).ToArray();

    /// <summary>
    /// Lists an image folder: one sub-folder per class (sorted by ordinal name, the label order), each holding image
    /// files (searched recursively, by extension). A class is named after its folder with '_' read as a space.
    /// </summary>
    /// <param name="root">The folder.</param>
    /// <exception cref="DatasetException">The folder is missing, has no class folders, or a class folder holds no images.</exception>
    public static ImageFileDataset FromFolder(string root)
    {
        ArgumentNullException.ThrowIfNull(root);
        string full = System.IO.Path.GetFullPath(root);
        if (!Directory.Exists(full))
            throw new DatasetException(full, "image folder not found; expected a folder with one sub-folder of images per class.");
        var classDirs = Directory.GetDirectories(full).Order(StringComparer.Ordinal).ToList();
        if (classDirs.Count == 0)
            throw new DatasetException(full, "the image folder has no sub-folders; expected one sub-folder of images per class (e.g. cat/, dog/).");
        var names = new List<string>();
        var files = new List<ImageFile>();
        foreach (var dir in classDirs)
        {
            var images = Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
                .Where(f => ImageExtensions.Contains(System.IO.Path.GetExtension(f)))
                .Order(StringComparer.Ordinal).ToList();
            if (images.Count == 0)
                throw new DatasetException(dir, $"class folder has no images; expected at least one file ending in {string.Join(", ", ImageExtensions.Order(StringComparer.Ordinal))}.");
            files.AddRange(images.Select(f => new ImageFile(f, names.Count)));
            names.Add(System.IO.Path.GetFileName(dir).Replace('_', ' '));
        }
        return new ImageFileDataset(names, files);
    }

    /// <summary>Decodes the files at <paramref name="indices"/> into a labelled batch.</summary>
    /// <param name="indices">Which files, in the order wanted.</param>
    /// <param name="decoder">Reads one file into float32 pixels <c>[C, H, W]</c> in [0, 1], all of one size
    /// (e.g. <c>ClipPreprocessor.LoadImage</c>).</param>
    /// <param name="progress">Receives (files decoded, files to decode) after each file.</param>
    /// <param name="cancellationToken">Stops between files.</param>
    /// <exception cref="DatasetException">A file is missing or cannot be decoded (the path is named).</exception>
    public LabeledImages Load(IReadOnlyList<long> indices, Func<string, Tensor> decoder,
        IProgress<(int Done, int Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(indices);
        ArgumentNullException.ThrowIfNull(decoder);
        if (indices.Count == 0) throw new ArgumentException("indices is empty; expected at least one file to load.", nameof(indices));
        using var scope = NewDisposeScope();
        var pixels = new List<Tensor>(indices.Count);
        var labels = new long[indices.Count];
        for (int i = 0; i < indices.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var file = Files[(int)indices[i]];
            pixels.Add(Decode(file.Path, decoder));
            labels[i] = file.Label;
            progress?.Report((i + 1, indices.Count));
        }
        var images = stack(pixels).to(ScalarType.Float32);
        var result = new LabeledImages(images.MoveToOuterDisposeScope(), tensor(labels).MoveToOuterDisposeScope(), ClassNames);
        return result;
    }

    private static Tensor Decode(string path, Func<string, Tensor> decoder)
    {
        if (!File.Exists(path)) throw new DatasetException(path, "image file not found.");
        try
        {
            return decoder(path);
        }
        catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new DatasetException(path, $"cannot be read as an image; expected an image file (PNG, JPEG, BMP, GIF, WebP, TIFF). {e.Message}", e);
        }
    }
}
