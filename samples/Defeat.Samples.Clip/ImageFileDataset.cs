using Defeat.Data;
using SixLabors.ImageSharp;
using static TorchSharp.torch;

namespace Defeat.Samples.Clip;

/// <summary>One labelled image file of an <see cref="ImageFileDataset"/>.</summary>
/// <param name="Path">Full path of the image file.</param>
/// <param name="Label">Class index into <see cref="ImageFileDataset.ClassNames"/>.</param>
public sealed record ImageFile(string Path, long Label);

/// <summary>
/// A labelled list of image files, read from an image folder (one sub-folder per class) or from a CoOp split file.
/// Listing touches no pixels; <see cref="Load"/> decodes only the files asked for, through the caller's decoder
/// (for CLIP, <c>ClipPreprocessor.LoadImage</c>), after reading each file's header to refuse images over
/// <see cref="ImageFileDatasetOptions.MaxPixels"/>.
/// </summary>
public sealed class ImageFileDataset
{
    /// <summary>File extensions (lower case) counted as images in an image folder.</summary>
    public static IReadOnlySet<string> ImageExtensions { get; } =
        new HashSet<string>(StringComparer.OrdinalIgnoreCase) { ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff" };

    /// <summary>Creates a data set from its parts.</summary>
    /// <param name="classNames">Class names in label order.</param>
    /// <param name="files">The files; every label must index <paramref name="classNames"/>.</param>
    /// <param name="options">Listing and decoding limits; defaults when null.</param>
    /// <exception cref="ArgumentException">A label is out of range.</exception>
    public ImageFileDataset(IReadOnlyList<string> classNames, IReadOnlyList<ImageFile> files, ImageFileDatasetOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(classNames);
        ArgumentNullException.ThrowIfNull(files);
        Options = options ?? new ImageFileDatasetOptions();
        foreach (var f in files)
            if (f.Label < 0 || f.Label >= classNames.Count)
                throw new ArgumentException($"{f.Path} has label {f.Label}; expected a label in [0, {classNames.Count - 1}].", nameof(files));
        ClassNames = classNames;
        Files = files;
    }

    /// <summary>Class names in label order.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>The listing and decoding limits in force.</summary>
    public ImageFileDatasetOptions Options { get; }

    /// <summary>The image files with their labels.</summary>
    public IReadOnlyList<ImageFile> Files { get; }

    /// <summary>The label of every file, in file order.</summary>
    public long[] Labels() => Files.Select(f => f.Label).ToArray();

    /// <summary>
    /// Lists an image folder: one sub-folder per class (sorted by ordinal name, the label order), each holding image
    /// files (searched recursively, by extension). A class is named after its folder with '_' read as a space.
    /// </summary>
    /// <remarks>Symbolic links to folders are not followed unless <see cref="ImageFileDatasetOptions.FollowDirectoryLinks"/>
    /// is set; then every folder is visited once by its real path (links resolved), so loops end. A file reached twice
    /// (through links) is listed once, at its first path in ordinal order.</remarks>
    /// <param name="root">The folder.</param>
    /// <param name="options">Listing and decoding limits; defaults when null.</param>
    /// <exception cref="DatasetException">The folder is missing, has no class folders, a class folder holds no images, a
    /// class folder is a link while links are not followed, or a link cannot be resolved (a loop of links).</exception>
    public static ImageFileDataset FromFolder(string root, ImageFileDatasetOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(root);
        options ??= new ImageFileDatasetOptions();
        string full = System.IO.Path.GetFullPath(root);
        if (!Directory.Exists(full))
            throw new DatasetException(full, "image folder not found; expected a folder with one sub-folder of images per class.");
        var classDirs = Directory.GetDirectories(full).Order(StringComparer.Ordinal).ToList();
        if (classDirs.Count == 0)
            throw new DatasetException(full, "the image folder has no sub-folders; expected one sub-folder of images per class (e.g. cat/, dog/).");
        var names = new List<string>();
        var files = new List<ImageFile>();
        var listing = new FolderListing(options.FollowDirectoryLinks);
        foreach (var dir in classDirs)
        {
            if (!options.FollowDirectoryLinks && new DirectoryInfo(dir).LinkTarget is { } target)
                throw new DatasetException(dir, $"class folder is a symbolic link (to {target}); links are not followed by default. " +
                    "Set ImageFileDatasetOptions.FollowDirectoryLinks to follow them, or replace the link by a folder.");
            var images = listing.Images(dir).Order(StringComparer.Ordinal).ToList();
            if (images.Count == 0)
                throw new DatasetException(dir, $"class folder has no images; expected at least one file ending in {string.Join(", ", ImageExtensions.Order(StringComparer.Ordinal))}.");
            files.AddRange(images.Select(f => new ImageFile(f, names.Count)));
            names.Add(System.IO.Path.GetFileName(dir).Replace('_', ' '));
        }
        return new ImageFileDataset(names, files, options);
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

    // The header first: a file of a few bytes can declare a 30000 x 30000 image, which no decoder should allocate.
    // Then anything at all the decoder throws (ImageSharp's format errors, overflows on crafted files, I/O) is this
    // data set's error, naming the file.
    private Tensor Decode(string path, Func<string, Tensor> decoder)
    {
        if (!File.Exists(path)) throw new DatasetException(path, "image file not found.");
        try
        {
            var info = Image.Identify(path)
                       ?? throw new DatasetException(path, "cannot be read as an image: no decoder recognises its header; expected an image file (PNG, JPEG, BMP, GIF, WebP, TIFF).");
            long pixels = (long)info.Width * info.Height;
            if (pixels > Options.MaxPixels)
                throw new DatasetException(path, $"declares a {info.Width} x {info.Height} image ({pixels} pixels); expected at most " +
                    $"{Options.MaxPixels} pixels (ImageFileDatasetOptions.MaxPixels). It was not decoded.");
            return decoder(path);
        }
        catch (Exception e) when (e is not (DatasetException or OperationCanceledException))
        {
            throw new DatasetException(path, $"cannot be read as an image; expected an image file (PNG, JPEG, BMP, GIF, WebP, TIFF). {e.Message}", e);
        }
    }
}
