using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>
/// FAB's projection step: the smallest move <c>d</c> (in L-inf or L2) that takes a point <c>p</c> onto the hyperplane
/// <c>w · z = b</c> while <c>p + d</c> stays in the [0, 1] box; where the box does not reach the hyperplane, the move
/// that gets closest (every coordinate to its bound).
/// </summary>
/// <remarks>
/// With <c>c = b - w · p</c> the required change, coordinate <c>i</c> moves in direction <c>sign(w_i c)</c> and has
/// room <c>r_i</c> to the box in that direction. For a norm budget the largest reachable change is piecewise linear
/// and increasing: L-inf with radius <c>λ</c> moves each coordinate <c>min(λ, r_i)</c>, L2 with multiplier <c>μ</c>
/// moves it <c>min(μ |w_i|, r_i)</c> (the KKT form of the box-constrained least-norm problem). Both have the form
/// <c>h(s) = Σ_{s_i ≤ s} a_i + s Σ_{s_i &gt; s} q_i</c> with breakpoints <c>s_i</c>, so sorting the breakpoints and
/// evaluating <c>h</c> at each (prefix sums) finds the segment where <c>h = |c|</c>, and there <c>s</c> in closed form.
/// </remarks>
internal static class FabProjection
{
    /// <summary>Rows of <paramref name="points"/> <c>[m, D]</c> projected onto the rows' hyperplanes <c>w · z = b</c>: the moves <c>[m, D]</c>.</summary>
    public static Tensor Project(Tensor points, Tensor w, Tensor b, AttackNorm norm)
    {
        using var scope = NewDisposeScope();
        var dtype = points.dtype;
        var p = points.to_type(ScalarType.Float64);
        var wd = w.to_type(ScalarType.Float64);
        var c = b.to_type(ScalarType.Float64) - (wd * p).sum(1);
        var need = c.abs().unsqueeze(1);
        var direction = wd.sign() * c.sign().unsqueeze(1);
        var room = where(direction.Gt(0), p.RSub(1), p).ClampMin(0);
        var absW = wd.abs();
        var moving = absW.Gt(0);

        // Breakpoint s_i, the change a_i coordinate i gives once saturated, the slope q_i it gives before.
        Tensor s, a, q;
        if (norm == AttackNorm.LInf)
        {
            s = where(moving, room, double.PositiveInfinity);
            q = absW;
        }
        else
        {
            s = where(moving, room / absW.ClampMin(1e-300), double.PositiveInfinity);
            q = absW * absW;
        }
        a = absW * room;

        var (sorted, order) = s.sort(1);
        var aSorted = a.gather(1, order);
        var qSorted = q.gather(1, order);
        var before = aSorted.cumsum(1) - aSorted;                       // Σ_{j<k} a_j
        var from = qSorted.flip(1).cumsum(1).flip(1);                    // Σ_{j>=k} q_j
        var reach = before.Plus(where(from.Gt(0), sorted * from, 0.0)); // h at each breakpoint
        var segment = reach.lt(need).sum(1, keepdim: true);             // first breakpoint where h >= |c|
        var dims = p.shape[1];
        using var dimsScalar = dims.ToScalar();
        var feasible = segment.lt(dimsScalar);
        var k = segment.ClampMax(dims - 1);
        var slope = from.gather(1, k);
        var level = where(slope.Gt(0), (need - before.gather(1, k)) / slope.ClampMin(1e-300), 0.0).ClampMin(0);
        level = where(feasible, level, double.PositiveInfinity);

        var move = norm == AttackNorm.LInf ? minimum(level, room) : minimum(level * absW, room);
        var d = where(moving, direction * move, 0.0);
        return d.to_type(dtype).MoveToOuterDisposeScope();
    }
}
