using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Validation;

/// <summary>
/// Shared argument checks for tensors entering the library: each throws an <see cref="ArgumentException"/>
/// naming the argument, what it got and what it expected.
/// </summary>
/// <remarks>
/// The value check (<see cref="RequirePixelRange"/>) costs one min and one max reduction and one
/// synchronisation; it is done once per public call (an attack, an evaluation, a data set), never per step.
/// </remarks>
public static class TensorChecks
{
    /// <summary>A shape as <c>[2, 3, 8, 8]</c>.</summary>
    public static string Shape(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return "[" + string.Join(", ", tensor.shape) + "]";
    }

    /// <summary>A tensor as <c>Float32 [2, 3, 8, 8]</c>: its dtype and shape.</summary>
    public static string Describe(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return $"{tensor.dtype} {Shape(tensor)}";
    }

    /// <summary>
    /// Throws an <see cref="ArgumentException"/> unless <paramref name="satisfied"/>:
    /// <c>"{name} must be {expected}, got {dtype} {shape}."</c> The one form of every shape and dtype check.
    /// </summary>
    /// <param name="tensor">The tensor checked (its dtype and shape are reported).</param>
    /// <param name="satisfied">Whether the tensor meets the expectation.</param>
    /// <param name="name">The argument name reported.</param>
    /// <param name="expected">What was expected, e.g. <c>"[B, classes]"</c> or <c>"int64 [4]"</c>.</param>
    public static void Require(Tensor tensor, bool satisfied, string name, string expected)
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        if (!satisfied)
            throw new ArgumentException($"{name} must be {expected}, got {Describe(tensor)}.", name);
    }

    /// <summary>
    /// Whether two devices are the same: same type and, beyond the CPU, the same index (an unspecified index, as in
    /// <c>cuda</c>, matches any). The one same-device rule of the library.
    /// </summary>
    public static bool SameDevice(Device a, Device b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        return a.type == b.type && (a.type == DeviceType.CPU || a.index == b.index || a.index < 0 || b.index < 0);
    }

    /// <summary>
    /// Requires floating-point images <c>[B, C, H, W]</c>; when <paramref name="channels"/> or
    /// <paramref name="size"/> are given, also that many channels and a square <c>size x size</c> image.
    /// An empty batch (<c>B = 0</c>) passes.
    /// </summary>
    /// <param name="images">The tensor to check.</param>
    /// <param name="name">The argument name reported.</param>
    /// <param name="channels">Expected channel count, or null for any.</param>
    /// <param name="size">Expected side of the square images, or null for any.</param>
    public static void RequireImages(Tensor images, string name, int? channels = null, int? size = null)
    {
        ArgumentNullException.ThrowIfNull(images, name);
        bool ok = images.dim() == 4 && images.is_floating_point()
                  && (channels is null || images.shape[1] == channels)
                  && (size is null || (images.shape[2] == size && images.shape[3] == size));
        if (!ok)
        {
            string c = channels?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "C";
            string h = size?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "H", w = size is null ? "W" : h;
            throw new ArgumentException($"{name} must be floating-point [B, {c}, {h}, {w}] pixels in [0, 1], got {Describe(images)}.", name);
        }
    }

    /// <summary>
    /// Requires every value finite and in [0, 1]. NaN and infinities are reported as such. An empty tensor passes.
    /// </summary>
    /// <param name="images">Pixels, any shape, floating point.</param>
    /// <param name="name">The argument name reported.</param>
    public static void RequirePixelRange(Tensor images, string name)
    {
        ArgumentNullException.ThrowIfNull(images, name);
        if (images.numel() == 0) return;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        // min/max propagate NaN, so one pair of reductions catches NaN, infinities and the range.
        var min = images.min().to_type(ScalarType.Float64).item<double>();
        var max = images.max().to_type(ScalarType.Float64).item<double>();
        if (double.IsNaN(min) || double.IsNaN(max))
            throw new ArgumentException($"{name} must be pixels in [0, 1], got NaN values.", name);
        if (double.IsInfinity(min) || double.IsInfinity(max))
            throw new ArgumentException($"{name} must be pixels in [0, 1], got infinite values (range [{min}, {max}]).", name);
        if (min < 0 || max > 1)
            throw new ArgumentException($"{name} must be pixels in [0, 1], got values in [{min}, {max}].", name);
    }

    /// <summary>Requires int64 labels <c>[batch]</c>; with <paramref name="classes"/>, also every label in <c>[0, classes)</c> (one reduction).</summary>
    /// <param name="labels">The tensor to check.</param>
    /// <param name="batch">The batch size the labels must match.</param>
    /// <param name="name">The argument name reported.</param>
    /// <param name="classes">Number of classes, or null to skip the range check.</param>
    public static void RequireLabels(Tensor labels, long batch, string name, long? classes = null)
    {
        ArgumentNullException.ThrowIfNull(labels, name);
        if (labels.dim() != 1 || labels.shape[0] != batch || labels.dtype != ScalarType.Int64)
            throw new ArgumentException($"{name} must be int64 [{batch}] (one class per image), got {Describe(labels)}.", name);
        if (classes is null || labels.numel() == 0) return;
        using var scope = NewDisposeScope();
        long min = labels.min().item<long>(), max = labels.max().item<long>();
        if (min < 0 || max >= classes)
            throw new ArgumentException($"{name} must be class indices in [0, {classes - 1}] for {classes} classes, got labels in [{min}, {max}].", name);
    }

    /// <summary>Requires <paramref name="tensor"/> on <paramref name="device"/> (see <see cref="SameDevice"/>).</summary>
    /// <param name="tensor">The tensor to check.</param>
    /// <param name="device">The device it must be on.</param>
    /// <param name="name">The argument name reported.</param>
    /// <param name="owner">What lives on <paramref name="device"/>, for the message (e.g. "the model", "the images").</param>
    public static void RequireDevice(Tensor tensor, Device device, string name, string owner)
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        ArgumentNullException.ThrowIfNull(device);
        if (!SameDevice(tensor.device, device))
            throw new ArgumentException($"{name} must be on {device}, the device of {owner}, got a tensor on {tensor.device}. Move it with .to({device}).", name);
    }

    /// <summary>
    /// Requires <paramref name="tensor"/> to have <paramref name="dtype"/> (the weights it meets). A mismatch would otherwise
    /// be a native error inside the first layer, or abort the process inside a matrix product.
    /// </summary>
    /// <param name="tensor">The tensor to check.</param>
    /// <param name="dtype">The dtype it must have.</param>
    /// <param name="name">The argument name reported.</param>
    /// <param name="owner">Whose dtype it is, for the message (e.g. "the shield's weights").</param>
    public static void RequireDtype(Tensor tensor, ScalarType dtype, string name, string owner)
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        if (tensor.dtype != dtype)
            throw new ArgumentException($"{name} must be {dtype} like {owner}, got {tensor.dtype} {Shape(tensor)}. Convert it with .to({dtype}).", name);
    }

    /// <summary>
    /// Requires that <paramref name="output"/>, computed by the caller's <paramref name="name"/> from inputs that require
    /// grad, requires grad itself. libtorch's <c>autograd.grad</c> on an output that does not aborts the process (the error
    /// escapes TorchSharp); call this before it.
    /// </summary>
    /// <param name="output">What the function returned.</param>
    /// <param name="name">The argument name reported (the function, e.g. "model").</param>
    /// <param name="input">What the gradient is taken with respect to, for the message (e.g. "the images").</param>
    public static void RequireDifferentiable(Tensor output, string name, string input)
    {
        ArgumentNullException.ThrowIfNull(output, name);
        if (!output.requires_grad)
            throw new ArgumentException($"{name}'s output {Shape(output)} does not require grad: it is a constant, a detached tensor, " +
                $"or was computed under no_grad; expected a differentiable function of {input}.", name);
    }
}
