using System.Numerics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Quantization;

/// <summary>
/// The tail of <see cref="VectorQuantizer"/>'s forward when nothing needs a gradient: the chosen codewords and the mean
/// squared distance <c>mean((z - e)^2)</c> of the inputs to them, in one pass over the rows on the CPU.
/// </summary>
/// <remarks>
/// Written here because it is faster: <c>index_select</c> then <c>mse_loss</c> is three passes and two fresh
/// <c>[M, D]</c> tensors, 0.3-0.4x of the distance GEMM at K = 512 (docs/benchmarks.md); here each row's codeword is
/// copied and its squared distance summed while the row is in L1. The codewords are the same bits as
/// <c>index_select</c>'s. The mean is summed per row in the vector width and over rows in float64, so it can differ from
/// <c>mse_loss</c>'s float32 cascade in the last bits (it is the more accurate of the two); no decision of the library
/// reads it (the trainer's losses come from the autograd path, which keeps <c>mse_loss</c>).
/// </remarks>
internal static class CodewordGather
{
    /// <summary>
    /// Whether the kernel takes these tensors: CPU, contiguous, float32 or float64 of one dtype, 2-D, D equal, and one
    /// libtorch thread (the pass is single-threaded; with more threads libtorch's parallel ops are as fast or faster).
    /// </summary>
    public static bool Supports(Tensor codes, Tensor inputs)
        => torch.get_num_threads() == 1
           && codes.device_type == DeviceType.CPU && inputs.device_type == DeviceType.CPU
           && codes.dim() == 2 && inputs.dim() == 2 && codes.shape[1] == inputs.shape[1]
           && (codes.dtype == ScalarType.Float32 || codes.dtype == ScalarType.Float64) && inputs.dtype == codes.dtype
           && codes.is_contiguous() && inputs.is_contiguous()
           && inputs.numel() * inputs.element_size() <= int.MaxValue
           && codes.numel() * codes.element_size() <= int.MaxValue;

    /// <summary>
    /// Returns <c>codes[indices]</c> <c>[M, D]</c> and <c>mean((inputs - codes[indices])^2)</c> (a scalar of the inputs'
    /// dtype). <paramref name="indices"/> is contiguous CPU int64 <c>[M]</c> with values in <c>[0, K)</c>, M &gt; 0; the
    /// caller checks <see cref="Supports"/> first.
    /// </summary>
    public static (Tensor Picked, Tensor MeanSquaredError) PickWithError(Tensor codes, Tensor indices, Tensor inputs)
    {
        int m = checked((int)inputs.shape[0]);
        int d = checked((int)inputs.shape[1]);
        Tensor picked = torch.empty(inputs.shape, dtype: inputs.dtype);
        ReadOnlySpan<long> index = MemoryMarshal.Cast<byte, long>(indices.bytes);
        double sum = inputs.dtype == ScalarType.Float32
            ? Rows(MemoryMarshal.Cast<byte, float>(codes.bytes), index, MemoryMarshal.Cast<byte, float>(inputs.bytes), MemoryMarshal.Cast<byte, float>(picked.bytes), m, d)
            : Rows(MemoryMarshal.Cast<byte, double>(codes.bytes), index, MemoryMarshal.Cast<byte, double>(inputs.bytes), MemoryMarshal.Cast<byte, double>(picked.bytes), m, d);
        GC.KeepAlive(codes);
        GC.KeepAlive(indices);
        GC.KeepAlive(inputs);
        return (picked, ScalarOps.Full([], sum / ((double)m * d), inputs.dtype));
    }

    private static double Rows<T>(ReadOnlySpan<T> codes, ReadOnlySpan<long> index, ReadOnlySpan<T> inputs, Span<T> picked, int m, int d)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int k = codes.Length / d;
        double sum = 0;
        for (int r = 0; r < m; r++)
        {
            long code = index[r];
            if ((ulong)code >= (ulong)k)
                throw new ArgumentOutOfRangeException(nameof(index), code, $"a codeword index must be in [0, {k})");
            ReadOnlySpan<T> e = codes.Slice((int)code * d, d);
            e.CopyTo(picked.Slice(r * d, d));
            sum += double.CreateTruncating(SquaredDistance(inputs.Slice(r * d, d), e));
        }
        return sum;
    }

    private static T SquaredDistance<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        ReadOnlySpan<Vector<T>> va = MemoryMarshal.Cast<T, Vector<T>>(a);
        ReadOnlySpan<Vector<T>> vb = MemoryMarshal.Cast<T, Vector<T>>(b);
        Vector<T> acc = Vector<T>.Zero;
        for (int i = 0; i < va.Length; i++)
        {
            Vector<T> diff = va[i] - vb[i];
            acc += diff * diff;
        }
        T sum = Vector.Sum(acc);
        for (int j = va.Length * Vector<T>.Count; j < a.Length; j++)
        {
            T diff = a[j] - b[j];
            sum += diff * diff;
        }
        return sum;
    }
}
