using Defeat.Validation;
using static TorchSharp.torch;

namespace Defeat.Data;

/// <summary>
/// A labelled image set held as tensors: pixels <c>[N, C, H, W]</c> float32 in [0, 1] and
/// int64 labels <c>[N]</c>, with the class names the labels index.
/// </summary>
public sealed class LabeledImages : IDisposable
{
    /// <summary>Wraps tensors; takes ownership of them (they are disposed with this object).</summary>
    /// <exception cref="ArgumentException">When shapes, dtypes or label range do not agree, or a pixel is NaN, infinite or outside [0, 1].</exception>
    public LabeledImages(Tensor images, Tensor labels, IReadOnlyList<string> classNames)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(classNames);
        TensorChecks.Require(images, images.dim() == 4 && images.dtype == ScalarType.Float32, nameof(images), "float32 [N, C, H, W]");
        TensorChecks.RequirePixelRange(images, nameof(images));
        if (classNames.Count < 1)
            throw new ArgumentException("classNames must hold at least one class name, got none.", nameof(classNames));
        TensorChecks.RequireLabels(labels, images.shape[0], nameof(labels), classNames.Count);
        Images = images;
        Labels = labels;
        ClassNames = classNames;
    }

    /// <summary>Pixels <c>[N, C, H, W]</c>, float32 in [0, 1].</summary>
    public Tensor Images { get; }

    /// <summary>Class index of each image, <c>[N]</c> int64.</summary>
    public Tensor Labels { get; }

    /// <summary>Names of the classes, indexed by label.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Number of images.</summary>
    public long Count => Images.shape[0];

    /// <summary>The labels as a managed array (one copy).</summary>
    public long[] LabelArray() => Labels.data<long>().ToArray();

    /// <summary>A new set holding copies of the images at <paramref name="indices"/>, in that order.</summary>
    public LabeledImages Subset(IReadOnlyList<long> indices)
    {
        ArgumentNullException.ThrowIfNull(indices);
        foreach (var i in indices)
            if (i < 0 || i >= Count)
                throw new ArgumentOutOfRangeException(nameof(indices), i, $"{nameof(indices)} must be in [0, {Count - 1}], got {i}.");
        using var index = tensor(indices.ToArray(), ScalarType.Int64);
        return new LabeledImages(Images.index_select(0, index), Labels.index_select(0, index), ClassNames);
    }

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
    }
}
