using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Quantization;

/// <summary>
/// The rotation-trick gradient estimator (Fifty et al., 2024): each input row <c>z</c> is carried onto its
/// codeword <c>e</c> by a rotation and a rescaling that are treated as constants, so the forward value is the
/// codeword and the backward pass sees a linear map instead of the identity of straight-through.
/// </summary>
/// <remarks>
/// <para>With <c>u = z/|z|</c>, <c>v = e/|e|</c>, <c>r = (u + v)/|u + v|</c> and <c>lambda = |e|/|z|</c>, the rotation
/// <c>R = I - 2 r r^T + 2 v u^T</c> takes <c>u</c> to <c>v</c> and leaves the directions orthogonal to both unchanged, so
/// <c>lambda R z = e</c>. The estimator is <c>q = sg[lambda R] z</c>: its gradient with respect to <c>z</c> is
/// <c>lambda R^T g = lambda (g - 2 r (r.g) + 2 u (v.g))</c> for an incoming gradient <c>g</c>; <c>R</c>, <c>lambda</c> and
/// the unit vectors carry no gradient.</para>
/// <para>The returned tensor's forward value is exactly the codeword (<c>sg[e] + (lambda R z - sg[lambda R z])</c>), not
/// the rounded product. Rows where the map is undefined (<c>|z| = 0</c>, or <c>z</c> pointing exactly away from
/// <c>e</c>, so that <c>u + v = 0</c>) fall back to straight-through: their gradient passes unchanged.</para>
/// </remarks>
public static class RotationTrick
{
    /// <summary>Norms below this (in the input's dtype) count as zero: the row falls back to straight-through.</summary>
    public const double DegenerateNorm = 1e-12;

    /// <summary>
    /// Returns a tensor whose value is <paramref name="codewords"/> and whose gradient reaches
    /// <paramref name="inputs"/> through the rotation trick.
    /// </summary>
    /// <param name="inputs">Quantizer inputs <c>z</c>, <c>[M, D]</c> (with autograd history).</param>
    /// <param name="codewords">The chosen codewords <c>e</c>, <c>[M, D]</c>; detached here.</param>
    /// <returns><c>[M, D]</c>; forward value: the codewords; backward: <c>lambda R^T g</c> per row to <paramref name="inputs"/>.</returns>
    /// <exception cref="ArgumentException">Shapes differ or are not <c>[M, D]</c>.</exception>
    public static Tensor Apply(Tensor inputs, Tensor codewords)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(codewords);
        if (inputs.dim() != 2)
            throw new ArgumentException($"Expected inputs of shape [M, D]; got [{string.Join(", ", inputs.shape)}].", nameof(inputs));
        if (!codewords.shape.SequenceEqual(inputs.shape))
            throw new ArgumentException($"Expected codewords of the inputs' shape [{string.Join(", ", inputs.shape)}]; got [{string.Join(", ", codewords.shape)}].", nameof(codewords));

        using var scope = torch.NewDisposeScope();
        Tensor e = codewords.detach();
        Tensor zConst = inputs.detach();
        Tensor zNorm = zConst.norm(1, keepdim: true);
        Tensor eNorm = e.norm(1, keepdim: true);
        Tensor u = zConst / zNorm.ClampMin(DegenerateNorm);
        Tensor v = e / eNorm.ClampMin(DegenerateNorm);
        Tensor sum = u.Plus(v);
        Tensor sumNorm = sum.norm(1, keepdim: true);
        Tensor r = sum / sumNorm.ClampMin(DegenerateNorm);
        Tensor lambda = eNorm / zNorm.ClampMin(DegenerateNorm);

        // lambda * R z with R = I - 2 r r^T + 2 v u^T, differentiable in z only.
        Tensor rotated = lambda * (inputs - r.Times(2) * (r * inputs).sum(1, keepdim: true)).Plus(v.Times(2) * (u * inputs).sum(1, keepdim: true));
        Tensor degenerate = zNorm.Le(DegenerateNorm).logical_or(sumNorm.Le(DegenerateNorm));
        Tensor mapped = torch.where(degenerate, inputs, rotated);
        return e.Plus(mapped - mapped.detach()).MoveToOuterDisposeScope();
    }
}
