using TorchSharp;
using static TorchSharp.torch;

namespace Defeat;

/// <summary>
/// Tensor arithmetic with numbers, and tensor addition, that keeps every <see cref="Scalar"/> alive until libtorch returns.
/// </summary>
/// <remarks>
/// <para>
/// TorchSharp 0.107 turns each number handed to a tensor operator or method (<c>x * 2</c>, <c>1 - x</c>,
/// <c>x.clamp(0, 1)</c>, <c>x.gt(0)</c>) into a <see cref="Scalar"/>, and adds two tensors as <c>add(y, alpha: 1)</c> with
/// another one, but keeps none of them reachable once their native handle has been read. A garbage collection started
/// by another thread during the call can then finalize such a Scalar, and free it, while libtorch is still reading it:
/// the call fails with <c>Expected false to be true</c> from <c>Scalar::toFloat</c>, or reads a wrong value. Each
/// method here holds its Scalar in a <c>using</c> (or uses one rooted for the life of the process) across the native
/// call. The library's own code is held to this by the build (BannedSymbols.txt); code that calls TorchSharp directly
/// under the same conditions (a UI thread, a progress reporter, a test host that allocates) can use these methods too.
/// </para>
/// <para>
/// Each method runs the same libtorch operation as the TorchSharp operator it replaces (<c>c - x</c> is
/// <c>x.negative().add(c)</c>, <c>c / x</c> is <c>x.reciprocal().mul(c)</c>, as in TorchSharp), so results are
/// bit-identical. Integer overloads keep an integer Scalar, so integer tensors stay integer, as with the operators.
/// </para>
/// </remarks>
public static class ScalarOps
{
    // Rooted for the life of the process: never finalized, so safe to hand to any call.
    private static readonly Scalar One = 1.ToScalar();
    private static readonly Scalar Two = 2.ToScalar();

    // Runs op on x with s and disposes s after it returns, so s stays reachable through the native call. The lambdas
    // are static: no closure is allocated per call.
    private static Tensor Held(Tensor x, Scalar s, Func<Tensor, Scalar, Tensor> op)
    {
        using (s) return op(x, s);
    }

    /// <summary><paramref name="x"/> + <paramref name="y"/>.</summary>
    public static Tensor Plus(this Tensor x, Tensor y) => x.add(y, One);

    /// <summary><paramref name="x"/> + <paramref name="alpha"/> <paramref name="y"/>.</summary>
    public static Tensor Plus(this Tensor x, Tensor y, double alpha)
    {
        using var a = alpha.ToScalar();
        return x.add(y, a);
    }

    /// <summary>In place: <paramref name="x"/> += <paramref name="y"/>.</summary>
    public static Tensor Plus_(this Tensor x, Tensor y) => x.add_(y, One);

    /// <summary>In place: <paramref name="x"/> += <paramref name="alpha"/> <paramref name="y"/>.</summary>
    public static Tensor Plus_(this Tensor x, Tensor y, double alpha)
    {
        using var a = alpha.ToScalar();
        return x.add_(y, a);
    }

    /// <summary>In place: <paramref name="x"/> += <paramref name="c"/>.</summary>
    public static Tensor Plus_(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.add_(s, One));

    /// <summary><paramref name="x"/> + <paramref name="c"/>.</summary>
    public static Tensor Plus(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.add(s, One));

    /// <inheritdoc cref="Plus(Tensor, double)"/>
    public static Tensor Plus(this Tensor x, long c) => Held(x, c.ToScalar(), static (t, s) => t.add(s, One));

    /// <summary><paramref name="x"/> - <paramref name="c"/>.</summary>
    public static Tensor Minus(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.sub(s));

    /// <inheritdoc cref="Minus(Tensor, double)"/>
    public static Tensor Minus(this Tensor x, long c) => Held(x, c.ToScalar(), static (t, s) => t.sub(s));

    /// <summary>In place: <paramref name="x"/> -= <paramref name="c"/>.</summary>
    public static Tensor Minus_(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.sub_(s));

    /// <summary><paramref name="c"/> - <paramref name="x"/> (PyTorch's <c>rsub</c>).</summary>
    public static Tensor RSub(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.negative().add(s, One));

    /// <summary><paramref name="x"/> * <paramref name="c"/>.</summary>
    public static Tensor Times(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.mul(s));

    /// <inheritdoc cref="Times(Tensor, double)"/>
    public static Tensor Times(this Tensor x, long c) => Held(x, c.ToScalar(), static (t, s) => t.mul(s));

    /// <summary>In place: <paramref name="x"/> *= <paramref name="c"/>.</summary>
    public static Tensor Times_(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.mul_(s));

    /// <summary><paramref name="x"/> / <paramref name="c"/>.</summary>
    public static Tensor Over(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.div(s));

    /// <inheritdoc cref="Over(Tensor, double)"/>
    public static Tensor Over(this Tensor x, long c) => Held(x, c.ToScalar(), static (t, s) => t.div(s));

    /// <summary>In place: <paramref name="x"/> /= <paramref name="c"/>.</summary>
    public static Tensor Over_(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.div_(s));

    /// <summary><paramref name="c"/> / <paramref name="x"/>, as TorchSharp computes it: <c>x.reciprocal() * c</c>.</summary>
    public static Tensor RDiv(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.reciprocal().mul(s));

    /// <summary><paramref name="x"/> squared, as TorchSharp's <c>square()</c> computes it: <c>pow(2)</c>.</summary>
    public static Tensor Square(this Tensor x) => x.pow(Two);

    /// <summary><paramref name="x"/> raised to <paramref name="exponent"/>.</summary>
    public static Tensor Pow(this Tensor x, double exponent) => Held(x, exponent.ToScalar(), static (t, s) => t.pow(s));

    /// <inheritdoc cref="Pow(Tensor, double)"/>
    public static Tensor Pow(this Tensor x, long exponent) => Held(x, exponent.ToScalar(), static (t, s) => t.pow(s));

    /// <summary><paramref name="x"/> &gt; <paramref name="c"/>.</summary>
    public static Tensor Gt(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.gt(s));

    /// <inheritdoc cref="Gt(Tensor, double)"/>
    public static Tensor Gt(this Tensor x, long c) => Held(x, c.ToScalar(), static (t, s) => t.gt(s));

    /// <summary><paramref name="x"/> &gt;= <paramref name="c"/>.</summary>
    public static Tensor Ge(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.ge(s));

    /// <inheritdoc cref="Ge(Tensor, double)"/>
    public static Tensor Ge(this Tensor x, long c) => Held(x, c.ToScalar(), static (t, s) => t.ge(s));

    /// <summary><paramref name="x"/> &lt; <paramref name="c"/>.</summary>
    public static Tensor Lt(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.lt(s));

    /// <inheritdoc cref="Lt(Tensor, double)"/>
    public static Tensor Lt(this Tensor x, long c) => Held(x, c.ToScalar(), static (t, s) => t.lt(s));

    /// <summary><paramref name="x"/> &lt;= <paramref name="c"/>.</summary>
    public static Tensor Le(this Tensor x, double c) => Held(x, c.ToScalar(), static (t, s) => t.le(s));

    /// <inheritdoc cref="Le(Tensor, double)"/>
    public static Tensor Le(this Tensor x, long c) => Held(x, c.ToScalar(), static (t, s) => t.le(s));

    /// <summary><paramref name="x"/> clamped to [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Tensor Clamp(this Tensor x, double min, double max)
    {
        using var lo = min.ToScalar();
        using var hi = max.ToScalar();
        return x.clamp(lo, hi);
    }

    /// <inheritdoc cref="Clamp(Tensor, double, double)"/>
    public static Tensor Clamp(this Tensor x, long min, long max)
    {
        using var lo = min.ToScalar();
        using var hi = max.ToScalar();
        return x.clamp(lo, hi);
    }

    /// <summary>In place: <paramref name="x"/> clamped to [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Tensor Clamp_(this Tensor x, double min, double max)
    {
        using var lo = min.ToScalar();
        using var hi = max.ToScalar();
        return x.clamp_(lo, hi);
    }

    /// <summary><paramref name="x"/> clamped from below at <paramref name="min"/>.</summary>
    public static Tensor ClampMin(this Tensor x, double min) => Held(x, min.ToScalar(), static (t, s) => t.clamp_min(s));

    /// <inheritdoc cref="ClampMin(Tensor, double)"/>
    public static Tensor ClampMin(this Tensor x, long min) => Held(x, min.ToScalar(), static (t, s) => t.clamp_min(s));

    /// <summary>In place: <paramref name="x"/> clamped from below at <paramref name="min"/>.</summary>
    public static Tensor ClampMin_(this Tensor x, double min) => Held(x, min.ToScalar(), static (t, s) => t.clamp_min_(s));

    /// <summary><paramref name="x"/> clamped from above at <paramref name="max"/>.</summary>
    public static Tensor ClampMax(this Tensor x, double max) => Held(x, max.ToScalar(), static (t, s) => t.clamp_max(s));

    /// <inheritdoc cref="ClampMax(Tensor, double)"/>
    public static Tensor ClampMax(this Tensor x, long max) => Held(x, max.ToScalar(), static (t, s) => t.clamp_max(s));

    /// <summary>In place: every element of <paramref name="x"/> set to <paramref name="value"/>.</summary>
    public static Tensor Fill_(this Tensor x, double value) => Held(x, value.ToScalar(), static (t, s) => t.fill_(s));

    /// <summary><paramref name="x"/> with <paramref name="value"/> where <paramref name="mask"/> is true.</summary>
    public static Tensor MaskedFill(this Tensor x, Tensor mask, double value)
    {
        using var s = value.ToScalar();
        return x.masked_fill(mask, s);
    }

    /// <summary>In place: the entries of <paramref name="x"/> at <paramref name="index"/> along <paramref name="dim"/> set to <paramref name="value"/>.</summary>
    public static Tensor IndexFill_(this Tensor x, long dim, Tensor index, double value)
    {
        using var s = value.ToScalar();
        return x.index_fill_(dim, index, s);
    }

    /// <summary>In place: the entries of <paramref name="x"/> at <paramref name="index"/> along <paramref name="dim"/> set to the integer <paramref name="value"/>.</summary>
    public static Tensor IndexFill_(this Tensor x, long dim, Tensor index, long value)
    {
        using var s = value.ToScalar();
        return x.index_fill_(dim, index, s);
    }

    /// <summary>In place: the entries of <paramref name="x"/> at <paramref name="index"/> along <paramref name="dim"/> set to <paramref name="value"/>.</summary>
    public static Tensor IndexFill_(this Tensor x, long dim, Tensor index, bool value)
    {
        using var s = value.ToScalar();
        return x.index_fill_(dim, index, s);
    }

    /// <summary>In place: <paramref name="source"/> added to the rows of <paramref name="x"/> at <paramref name="index"/> along <paramref name="dim"/>.</summary>
    public static Tensor IndexAdd_(this Tensor x, long dim, Tensor index, Tensor source) => x.index_add_(dim, index, source, One);

    /// <summary>A tensor of shape <paramref name="size"/> filled with <paramref name="value"/>.</summary>
    public static Tensor Full(long[] size, double value, ScalarType? dtype = null, Device? device = null)
    {
        using var s = value.ToScalar();
        return full(size, s, dtype, device);
    }

    /// <summary>A tensor of shape <paramref name="size"/> filled with the integer <paramref name="value"/>.</summary>
    public static Tensor Full(long[] size, long value, ScalarType? dtype = null, Device? device = null)
    {
        using var s = value.ToScalar();
        return full(size, s, dtype, device);
    }

    /// <summary>A vector of length <paramref name="size"/> filled with <paramref name="value"/>.</summary>
    public static Tensor Full(long size, double value, ScalarType? dtype = null, Device? device = null) => Full([size], value, dtype, device);

    /// <summary>A vector of length <paramref name="size"/> filled with the integer <paramref name="value"/>.</summary>
    public static Tensor Full(long size, long value, ScalarType? dtype = null, Device? device = null)
    {
        using var s = value.ToScalar();
        return full([size], s, dtype, device);
    }

    /// <summary>0, 1, ..., <paramref name="stop"/> - 1.</summary>
    public static Tensor Arange(long stop, ScalarType? dtype = null, Device? device = null)
    {
        using var s = stop.ToScalar();
        return arange(s, dtype, device);
    }
}
