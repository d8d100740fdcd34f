using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Quantization;

/// <summary>
/// The nearest-code choice of <see cref="NearestCodeSearch"/> on the CPU: for each row <c>s</c> of a contiguous matrix of
/// inner products <c>z.e_k</c>, the index of the smallest score <c>bias_k - 2 s_k</c>, with libtorch's <c>min(dim: 1)</c>
/// semantics (the first minimum on ties, the first NaN when a row holds one).
/// </summary>
/// <remarks>
/// Written here because it is faster, not different. libtorch's CPU <c>min(dim)</c> with indices is a scalar loop (about
/// 1 ns per score), and <c>addmm(bias, z, e^T, 1, -2)</c> first copies the broadcast bias into the whole score matrix and
/// then has the GEMM read it back: together 0.3-0.6x of the bare matmul at K = 512 (docs/benchmarks.md). Here the GEMM is
/// a bare <c>mm</c> and the bias is folded into two SIMD passes per row that read the scores in place (no copy), the
/// minimum and then its first position (AVX-512 or AVX2 lanes). <c>bias - (s + s)</c> is the value the GEMM's epilogue computes,
/// <c>beta * bias + alpha * s</c> with <c>alpha = -2</c> exact, so the scores are the same numbers as before.
/// </remarks>
internal static class RowArgMin
{
    /// <summary>Whether the kernel can take <paramref name="scores"/> (CPU, contiguous, 2-D, float32 or float64).</summary>
    public static bool Supports(Tensor scores)
        => scores.device_type == DeviceType.CPU
           && scores.dim() == 2
           && (scores.dtype == ScalarType.Float32 || scores.dtype == ScalarType.Float64)
           && scores.is_contiguous()
           && scores.numel() * scores.element_size() <= int.MaxValue;

    /// <summary>
    /// Writes into <paramref name="indices"/> (contiguous CPU int64 <c>[rows]</c>) the index of each row's minimum of
    /// <c>bias - 2 scores</c>, for <paramref name="scores"/> <c>[rows, K]</c> and <paramref name="bias"/> contiguous
    /// <c>[K]</c> of the same dtype. The caller checks <see cref="Supports"/> first.
    /// </summary>
    public static void Into(Tensor scores, Tensor bias, Tensor indices)
    {
        int rows = checked((int)scores.shape[0]);
        int k = checked((int)scores.shape[1]);
        Span<long> output = MemoryMarshal.Cast<byte, long>(indices.bytes);
        if (scores.dtype == ScalarType.Float32)
            Rows(MemoryMarshal.Cast<byte, float>(scores.bytes), MemoryMarshal.Cast<byte, float>(bias.bytes), rows, k, output);
        else
            Rows(MemoryMarshal.Cast<byte, double>(scores.bytes), MemoryMarshal.Cast<byte, double>(bias.bytes), rows, k, output);
        // The spans point into native memory that the tensors own: keep them alive until here.
        GC.KeepAlive(scores);
        GC.KeepAlive(bias);
        GC.KeepAlive(indices);
    }

    private static void Rows<T>(ReadOnlySpan<T> scores, ReadOnlySpan<T> bias, int rows, int k, Span<long> output)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int r = 0; r < rows; r++)
            output[r] = Row(scores.Slice(r * k, k), bias);
    }

    /// <summary>The first index of the minimum of <c>bias - 2 s</c>, or of its first NaN.</summary>
    internal static int Row<T>(ReadOnlySpan<T> s, ReadOnlySpan<T> bias)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (s.IsEmpty || bias.Length != s.Length)
            throw new ArgumentException($"a row of {s.Length} scores needs {s.Length} biases (got {bias.Length}) and at least one score", nameof(s));
        if (Vector512.IsHardwareAccelerated)
            return Row<Lanes512<T>, Vector512<T>, T>(s, bias);
        if (Vector256.IsHardwareAccelerated)
            return Row<Lanes256<T>, Vector256<T>, T>(s, bias);
        return ScalarRow(s, bias);
    }

    /// <summary>The kernel at a given vector width (256 or 512 bits), for tests of the path this machine does not take.</summary>
    internal static int RowAtWidth<T>(ReadOnlySpan<T> s, ReadOnlySpan<T> bias, int bits)
        where T : unmanaged, IFloatingPointIeee754<T>
        => bits == 512 ? Row<Lanes512<T>, Vector512<T>, T>(s, bias) : Row<Lanes256<T>, Vector256<T>, T>(s, bias);

    // Two passes over the row: the minimum, then its first position. The first pass keeps four independent running
    // minima so that consecutive vector minima do not wait for each other (the loop is then bound by the loads).
    private static int Row<TLanes, TV, T>(ReadOnlySpan<T> s, ReadOnlySpan<T> bias)
        where TLanes : ILanes<TV, T>
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int width = TLanes.Count, n = s.Length, last = n - width;
        if (last < 0)
            return ScalarRow(s, bias);
        ref T sp = ref MemoryMarshal.GetReference(s);
        ref T bp = ref MemoryMarshal.GetReference(bias);

        // The last full block, overlapping the others (a repeated element changes no minimum).
        TV tail = TLanes.Score(ref sp, ref bp, last);
        TV m0 = tail, m1 = tail, m2 = tail, m3 = tail;
        TV nan = TLanes.IsNaN(tail);
        int i = 0;
        for (; i <= n - 4 * width; i += 4 * width)
        {
            TV a = TLanes.Score(ref sp, ref bp, i), b = TLanes.Score(ref sp, ref bp, i + width);
            TV c = TLanes.Score(ref sp, ref bp, i + 2 * width), d = TLanes.Score(ref sp, ref bp, i + 3 * width);
            m0 = TLanes.Min(m0, a); m1 = TLanes.Min(m1, b); m2 = TLanes.Min(m2, c); m3 = TLanes.Min(m3, d);
            nan = TLanes.Or(nan, TLanes.Or(TLanes.Or(TLanes.IsNaN(a), TLanes.IsNaN(b)), TLanes.Or(TLanes.IsNaN(c), TLanes.IsNaN(d))));
        }
        for (; i <= last; i += width)
        {
            TV a = TLanes.Score(ref sp, ref bp, i);
            m0 = TLanes.Min(m0, a);
            nan = TLanes.Or(nan, TLanes.IsNaN(a));
        }
        if (TLanes.Mask(nan) != 0)
            return ScalarRow(s, bias); // rare: let the reference loop give NaN its libtorch meaning

        T best = TLanes.Smallest(TLanes.Min(TLanes.Min(m0, m1), TLanes.Min(m2, m3)));
        TV target = TLanes.Broadcast(best);
        for (int j = 0; j <= last; j += width)
        {
            ulong hits = TLanes.Mask(TLanes.Equal(TLanes.Score(ref sp, ref bp, j), target));
            if (hits != 0)
                return j + BitOperations.TrailingZeroCount(hits);
        }
        return last + BitOperations.TrailingZeroCount(TLanes.Mask(TLanes.Equal(tail, target)));
    }

    /// <summary>The reference loop: a NaN wins at once; otherwise a later value wins only when strictly smaller.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static int ScalarRow<T>(ReadOnlySpan<T> s, ReadOnlySpan<T> bias)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int best = 0;
        T bestValue = bias[0] - (s[0] + s[0]);
        if (T.IsNaN(bestValue))
            return 0;
        for (int i = 1; i < s.Length; i++)
        {
            T value = bias[i] - (s[i] + s[i]);
            if (T.IsNaN(value))
                return i;
            if (value < bestValue)
            {
                best = i;
                bestValue = value;
            }
        }
        return best;
    }

    // The few vector operations the kernel needs, over a width the JIT specialises (struct type arguments):
    // 512-bit lanes where AVX-512 is there, 256-bit otherwise, with no copy of the algorithm per width.
    private interface ILanes<TV, T>
    {
        static abstract int Count { get; }
        static abstract TV Score(ref T s, ref T bias, int offset);
        static abstract TV Min(TV a, TV b);
        static abstract TV IsNaN(TV a);
        static abstract TV Or(TV a, TV b);
        static abstract TV Equal(TV a, TV b);
        static abstract TV Broadcast(T value);
        static abstract ulong Mask(TV a);
        static abstract T Smallest(TV a);
    }

    private readonly struct Lanes512<T> : ILanes<Vector512<T>, T>
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        public static int Count => Vector512<T>.Count;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<T> Score(ref T s, ref T bias, int offset)
        {
            Vector512<T> v = Vector512.LoadUnsafe(ref s, (nuint)offset);
            return Vector512.LoadUnsafe(ref bias, (nuint)offset) - (v + v);
        }

        public static Vector512<T> Min(Vector512<T> a, Vector512<T> b) => Vector512.Min(a, b);
        public static Vector512<T> IsNaN(Vector512<T> a) => ~Vector512.Equals(a, a);
        public static Vector512<T> Or(Vector512<T> a, Vector512<T> b) => a | b;
        public static Vector512<T> Equal(Vector512<T> a, Vector512<T> b) => Vector512.Equals(a, b);
        public static Vector512<T> Broadcast(T value) => Vector512.Create(value);
        public static ulong Mask(Vector512<T> a) => a.ExtractMostSignificantBits();

        public static T Smallest(Vector512<T> a)
        {
            T best = a[0];
            for (int lane = 1; lane < Vector512<T>.Count; lane++)
                if (a[lane] < best)
                    best = a[lane];
            return best;
        }
    }

    private readonly struct Lanes256<T> : ILanes<Vector256<T>, T>
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        public static int Count => Vector256<T>.Count;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<T> Score(ref T s, ref T bias, int offset)
        {
            Vector256<T> v = Vector256.LoadUnsafe(ref s, (nuint)offset);
            return Vector256.LoadUnsafe(ref bias, (nuint)offset) - (v + v);
        }

        public static Vector256<T> Min(Vector256<T> a, Vector256<T> b) => Vector256.Min(a, b);
        public static Vector256<T> IsNaN(Vector256<T> a) => ~Vector256.Equals(a, a);
        public static Vector256<T> Or(Vector256<T> a, Vector256<T> b) => a | b;
        public static Vector256<T> Equal(Vector256<T> a, Vector256<T> b) => Vector256.Equals(a, b);
        public static Vector256<T> Broadcast(T value) => Vector256.Create(value);
        public static ulong Mask(Vector256<T> a) => a.ExtractMostSignificantBits();

        public static T Smallest(Vector256<T> a)
        {
            T best = a[0];
            for (int lane = 1; lane < Vector256<T>.Count; lane++)
                if (a[lane] < best)
                    best = a[lane];
            return best;
        }
    }
}
