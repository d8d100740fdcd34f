using Defeat.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Samples.FashionMnist;

/// <summary>
/// Fashion-MNIST (Zalando Research, MIT): 60,000 training and 10,000 test grey 28x28 images of
/// 10 clothing classes, read from the four IDX files of the original release.
/// </summary>
public static class FashionMnist
{
    /// <summary>The environment variable that may name the folder with the IDX files.</summary>
    public const string DirectoryVariable = "FASHION_MNIST_DIR";

    /// <summary>Where Debian's <c>dataset-fashion-mnist</c> package installs the files.</summary>
    public const string DebianDirectory = "/usr/share/datasets/fashion-mnist";

    /// <summary>The class names, in label order, as the data set's authors name them.</summary>
    public static IReadOnlyList<string> ClassNames { get; } =
    [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ];

    /// <summary>
    /// Finds the folder holding the IDX files: <paramref name="explicitDirectory"/> when given,
    /// else <see cref="DirectoryVariable"/>, else <see cref="DebianDirectory"/>.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">When none of the three holds the files; the message names all three ways.</exception>
    public static string Locate(string? explicitDirectory = null)
    {
        var tried = new List<string>();
        foreach (var (dir, source) in new[]
                 {
                     (explicitDirectory, "--data"),
                     (Environment.GetEnvironmentVariable(DirectoryVariable), DirectoryVariable),
                     (DebianDirectory, "the Debian package dataset-fashion-mnist"),
                 })
        {
            if (string.IsNullOrWhiteSpace(dir)) continue;
            if (FileName(dir, "train", images: true) is not null) return dir;
            tried.Add($"{dir} (from {source})");
            if (source == "--data") break; // an explicit folder that lacks the files is an error, not a hint
        }
        throw new DirectoryNotFoundException(
            "Fashion-MNIST was not found" + (tried.Count > 0 ? $" in {string.Join(", ", tried)}" : "") + ". " +
            $"Give the folder with train-images-idx3-ubyte(.gz) and its three sibling files by --data <dir>, " +
            $"or set {DirectoryVariable}=<dir>, or install it with: sudo apt-get install dataset-fashion-mnist " +
            $"(files land in {DebianDirectory}).");
    }

    /// <summary>Loads the training split (60,000 images) or the test split (10,000).</summary>
    /// <param name="directory">Folder with the IDX files, plain or <c>.gz</c>.</param>
    /// <param name="train">True for <c>train-*</c>, false for <c>t10k-*</c>.</param>
    /// <exception cref="IdxFormatException">A file is missing, truncated or corrupt, or images and labels disagree.</exception>
    public static LabeledImages Load(string directory, bool train)
    {
        string split = train ? "train" : "t10k";
        string imagesPath = FileName(directory, split, images: true) ?? Path.Combine(directory, $"{split}-images-idx3-ubyte.gz");
        string labelsPath = FileName(directory, split, images: false) ?? Path.Combine(directory, $"{split}-labels-idx1-ubyte.gz");
        var (imageShape, pixels) = IdxReader.Read(imagesPath, expectedRank: 3);
        var (labelShape, labelBytes) = IdxReader.Read(labelsPath, expectedRank: 1);
        if (labelShape[0] != imageShape[0])
            throw new IdxFormatException(labelsPath, $"has {labelShape[0]} labels but {imagesPath} has {imageShape[0]} images.");
        int bad = Array.FindIndex(labelBytes, b => b >= ClassNames.Count);
        if (bad >= 0)
            throw new IdxFormatException(labelsPath, $"label {labelBytes[bad]} at position {bad} is outside [0, {ClassNames.Count - 1}].");

        using var scope = NewDisposeScope();
        using var s = 255f.ToScalar();
        var images = tensor(pixels, [imageShape[0], 1, imageShape[1], imageShape[2]], ScalarType.Byte)
            .to_type(ScalarType.Float32).div_(s);
        var labels = tensor(labelBytes, [labelShape[0]], ScalarType.Byte).to_type(ScalarType.Int64);
        return new LabeledImages(images.MoveToOuterDisposeScope(), labels.MoveToOuterDisposeScope(), ClassNames);
    }

    private static string? FileName(string directory, string split, bool images)
    {
        string stem = Path.Combine(directory, images ? $"{split}-images-idx3-ubyte" : $"{split}-labels-idx1-ubyte");
        return File.Exists(stem + ".gz") ? stem + ".gz" : File.Exists(stem) ? stem : null;
    }
}
