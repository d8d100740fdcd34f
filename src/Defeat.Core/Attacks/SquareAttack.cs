using System.Collections.Concurrent;
using Defeat.Validation;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>
/// The Square attack (Andriushchenko, Croce, Flammarion and Hein, ECCV 2020): a score-based random search that
/// needs no gradient. Each step changes one random square window of the current best perturbation and keeps the change
/// if the margin loss falls, so gradient masking (a quantiser, a step function, a stop-gradient) does not blind it.
/// </summary>
/// <remarks>
/// <para>L-inf: the search starts from vertical stripes of <c>±ε</c> and sets a window to <c>x0 ± ε</c> (one sign per
/// channel) each step. L2: it starts from a grid of centred patterns and moves mass between two windows, keeping the
/// perturbation's norm at <c>ε</c> before the [0, 1] clamp. The window's side is <c>round(sqrt(p h w))</c> for the
/// fraction <c>p</c> of <see cref="SquareFraction"/>; each image draws its own windows and signs.</para>
/// <para>Queries are forward passes only, run without gradient, and only on the images not fooled yet; no image is
/// queried more than <see cref="SquareOptions.Queries"/> times per run (counting the clean check of the first run and
/// the random start). Every queried point lies in the ball and in [0, 1]. Images the model already gets wrong are
/// returned unchanged; per image the result is the point that fooled the model or, where none did, the point of lowest
/// loss over the runs. Images must be <c>[B, C, H, W]</c>.</para>
/// </remarks>
public sealed class SquareAttack : IAdversarialAttack
{
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<int, double[]> _patterns = new();

    /// <summary>Creates the attack.</summary>
    /// <param name="options">Attack options; <see cref="SquareOptions"/> defaults when null.</param>
    /// <param name="logger">Receives a debug line per run.</param>
    public SquareAttack(SquareOptions? options = null, ILogger<SquareAttack>? logger = null)
    {
        Options = options ?? new SquareOptions();
        Options.Validate();
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The validated options.</summary>
    public SquareOptions Options { get; }

    /// <summary>
    /// The published schedule of the fraction <c>p</c> of pixels a square covers at search step
    /// <paramref name="step"/> (0-based): <c>p_init</c> up to step 10, then halved after steps 10, 50, 200, 500, 1000,
    /// 2000, 4000, 6000 and 8000 (down to <c>p_init / 512</c>). With <paramref name="rescale"/> the step is first mapped
    /// to <c>floor(step / queries · 10000)</c>, so the schedule spans any budget.
    /// </summary>
    /// <param name="step">Search step, from 0.</param>
    /// <param name="queries">The budget the schedule is stretched to.</param>
    /// <param name="initialFraction">p_init.</param>
    /// <param name="rescale">Whether to stretch the 10,000-step schedule to <paramref name="queries"/>.</param>
    public static double SquareFraction(int step, int queries, double initialFraction, bool rescale)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfLessThan(queries, 1);
        long i = rescale ? (long)Math.Floor((double)step / queries * 10000) : step;
        int halvings = i switch
        {
            <= 10 => 0,
            <= 50 => 1,
            <= 200 => 2,
            <= 500 => 3,
            <= 1000 => 4,
            <= 2000 => 5,
            <= 4000 => 6,
            <= 6000 => 7,
            <= 8000 => 8,
            _ => 9,
        };
        return initialFraction / (1 << halvings);
    }

    /// <inheritdoc />
    public Tensor Perturb(nn.Module<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var guard = new ModelStateGuard(model, Options.EvalModeDuringAttack);
        return Perturb(model.call, images, labels, cancellationToken);
    }

    /// <inheritdoc />
    public Tensor Perturb(Func<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        PerturbationBall.CheckInputs(images, labels);
        if (images.dim() != 4)
            throw new ArgumentException($"images must be [B, C, H, W] for the Square attack's windows, got {TensorChecks.Shape(images)}.", nameof(images));
        cancellationToken.ThrowIfCancellationRequested();
        if (images.shape[0] == 0) return images.detach().clone();

        using var outer = NewDisposeScope();
        using var noGrad = no_grad();
        var x0 = images.detach();
        using var generator = new Generator(Options.Seed, images.device);

        var clean = PerturbationBall.CheckLogits(model(x0), x0.shape[0]);
        if (clean.shape[1] < 2)
            throw new ArgumentException($"The Square attack's margin needs a model with at least 2 classes, got logits with {clean.shape[1]}.", nameof(model));
        PerturbationBall.CheckLabelRange(labels, clean.shape[1]);
        var fooled = AttackObjectives.Success(clean, labels, Options.Targeted);
        var result = x0.clone();
        var lowest = ScalarOps.Full(x0.shape[0], double.PositiveInfinity, dtype: ScalarType.Float64, device: x0.device);

        for (var restart = 0; restart < Options.Restarts; restart++)
        {
            using var scope = NewDisposeScope();
            var active = fooled.logical_not().nonzero().squeeze(1);
            if (active.shape[0] == 0) break;
            // The first run's budget also pays for the clean check.
            var steps = Options.Queries - 1 - (restart == 0 ? 1 : 0);
            var (best, loss, done) = Run(model, x0.index_select(0, active), labels.index_select(0, active), steps, generator, cancellationToken);
            var shape = PerturbationBall.Broadcast(best.shape[0], best.dim());
            var better = done.logical_not().logical_and(loss.lt(lowest.index_select(0, active)));
            var keep = done.logical_or(better);
            result.index_copy_(0, active, where(keep.reshape(shape), best, result.index_select(0, active)));
            lowest.index_copy_(0, active, where(better, loss, lowest.index_select(0, active)));
            fooled.index_copy_(0, active, done);
            if (_logger.IsEnabled(LogLevel.Debug))
                _logger.LogDebug("Square run {Restart}/{Restarts}: {Fooled} of {Total} images fooled", restart + 1, Options.Restarts,
                    fooled.sum().item<long>(), fooled.shape[0]);
        }

        return PerturbationBall.EnforceExactly(result, x0, Options.Norm, Options.Epsilon, "Square").detach().MoveToOuterDisposeScope();
    }

    // One run: the random start, then up to `steps` search steps on the images not fooled yet.
    private (Tensor Best, Tensor Loss, Tensor Done) Run(Func<Tensor, Tensor> model, Tensor x0, Tensor y, int steps,
        Generator generator, CancellationToken cancellationToken)
    {
        using var outer = NewDisposeScope();
        var (channels, height, width) = (x0.shape[1], x0.shape[2], x0.shape[3]);
        var best = Options.Norm == AttackNorm.LInf ? StripesStart(x0, generator) : TilesStart(x0, generator);
        var (loss, done) = Score(model, best, y);

        for (var step = 0; step < steps; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var sub = done.logical_not().nonzero().squeeze(1);
            if (sub.shape[0] == 0) break;
            var xa = x0.index_select(0, sub);
            var xb = best.index_select(0, sub);
            var p = SquareFraction(step, Options.Queries, Options.InitialFraction, Options.RescaleSchedule);
            var side = (int)Math.Round(Math.Sqrt(p * height * width));
            var proposal = Options.Norm == AttackNorm.LInf
                ? LInfStep(xa, xb, (int)Math.Min(Math.Max(side, 1), Math.Min(height, width)), generator)
                : L2Step(xa, xb, L2Side(side, height, width), channels, generator);

            var (newLoss, newDone) = Score(model, proposal, y.index_select(0, sub));
            var oldLoss = loss.index_select(0, sub);
            var improved = newLoss.lt(oldLoss);
            var accept = improved.logical_or(newDone);
            best.index_copy_(0, sub, where(accept.reshape(PerturbationBall.Broadcast(sub.shape[0], 4)), proposal, xb));
            loss.index_copy_(0, sub, where(improved, newLoss, oldLoss));
            done.index_copy_(0, sub, newDone);
        }
        return (best.MoveToOuterDisposeScope(), loss.MoveToOuterDisposeScope(), done.MoveToOuterDisposeScope());
    }

    // One query: the loss the search lowers and whether the goal is reached.
    private (Tensor Loss, Tensor Done) Score(Func<Tensor, Tensor> model, Tensor x, Tensor y)
    {
        var logits = PerturbationBall.CheckLogits(model(x), x.shape[0]);
        var loss = AttackObjectives.PerSample(logits, y, Options.Loss, Options.Targeted).neg().to_type(ScalarType.Float64);
        return (loss, AttackObjectives.Success(logits, y, Options.Targeted));
    }

    // L-inf start: each column of each channel shifted by +eps or -eps.
    private Tensor StripesStart(Tensor x0, Generator generator)
    {
        var signs = RandomSigns(new[] { x0.shape[0], x0.shape[1], 1, x0.shape[3] }, x0, generator);
        return PerturbationBall.Project(x0.Plus(signs.Times(Options.Epsilon)), x0, AttackNorm.LInf, Options.Epsilon);
    }

    // L-inf step: one window per image set to x0 + eps * (a sign per channel).
    private Tensor LInfStep(Tensor xa, Tensor xb, int side, Generator generator)
    {
        var n = xa.shape[0];
        var window = Window(n, xa.shape[2], xa.shape[3], side, xa.device, generator);
        var signs = RandomSigns(new[] { n, xa.shape[1], 1, 1 }, xa, generator);
        var vertex = PerturbationBall.Project(xa.Plus(signs.Times(Options.Epsilon)), xa, AttackNorm.LInf, Options.Epsilon);
        return where(window.Mask, vertex, xb);
    }

    // The L2 window side: at least 3 and odd, as published, and no larger than the image.
    private static int L2Side(int side, long height, long width)
    {
        side = Math.Max(side, 3);
        if (side % 2 == 0) side++;
        return (int)Math.Min(side, Math.Min(height, width));
    }

    // L2 start: a grid of tiles, each a centred pattern with a random sign per channel, scaled to norm eps.
    private Tensor TilesStart(Tensor x0, Generator generator)
    {
        var (n, channels, height, width) = (x0.shape[0], x0.shape[1], x0.shape[2], x0.shape[3]);
        var tile = (int)Math.Max(Math.Min(height, width) / 5, 1);
        long rows = height / tile, cols = width / tile;
        long top = (height - rows * tile) / 2, left = (width - cols * tile) / 2;
        var delta = zeros_like(x0);
        for (long r = 0; r < rows; r++)
        {
            for (long c = 0; c < cols; c++)
            {
                using var scope = NewDisposeScope();
                var origin = ScalarOps.Full(n, top + r * tile, dtype: ScalarType.Int64, device: x0.device);
                var originW = ScalarOps.Full(n, left + c * tile, dtype: ScalarType.Int64, device: x0.device);
                var pattern = PlacedPattern(n, height, width, tile, origin, originW, x0, generator);
                delta.Plus_(pattern * RandomSigns(new[] { n, channels, 1, 1 }, x0, generator));
            }
        }
        return x0.Plus(PerturbationBall.Normalize(delta, AttackNorm.L2).Times(Options.Epsilon)).Clamp(0.0, 1.0);
    }

    // L2 step: window 1 gets a fresh pattern plus its old content, window 2 is emptied, and the freed norm budget
    // goes to window 1; then the whole perturbation is rescaled to norm eps and clamped to [0, 1].
    private Tensor L2Step(Tensor xa, Tensor xb, int side, long channels, Generator generator)
    {
        var (n, height, width) = (xa.shape[0], xa.shape[2], xa.shape[3]);
        var delta = xb - xa;
        var first = Window(n, height, width, side, xa.device, generator);
        var second = Window(n, height, width, side, xa.device, generator);
        var mask1 = first.Mask.to_type(xa.dtype);
        var union = first.Mask.logical_or(second.Mask).to_type(xa.dtype);
        var windowNorm = (delta * mask1).Pow(2).sum(new long[] { 2, 3 }, keepdim: true).sqrt();
        var imageNorm = delta.Pow(2).sum(new long[] { 1, 2, 3 }, keepdim: true).sqrt();
        var unionNorm = (delta * union).Pow(2).sum(new long[] { 2, 3 }, keepdim: true).sqrt();

        var pattern = PlacedPattern(n, height, width, side, first.Top, first.Left, xa, generator);
        var fresh = (pattern * RandomSigns(new[] { n, channels, 1, 1 }, xa, generator)).Plus(delta * mask1 / windowNorm.Plus(1e-12));
        var freshNorm = fresh.Pow(2).sum(new long[] { 2, 3 }, keepdim: true).sqrt();
        var budget = imageNorm.Pow(2).RSub(Options.Epsilon * Options.Epsilon).ClampMin(0).Over(channels).Plus(unionNorm.Pow(2)).sqrt();
        fresh = fresh / freshNorm.Plus(1e-12) * budget;
        var moved = where(first.Mask, fresh, where(second.Mask, zeros_like(delta), delta));
        return xa.Plus(PerturbationBall.Normalize(moved, AttackNorm.L2).Times(Options.Epsilon)).Clamp(0.0, 1.0);
    }

    private readonly record struct SquareWindow(Tensor Mask, Tensor Top, Tensor Left);

    // A random side x side window per image: its mask [n, 1, H, W] and its corner.
    private static SquareWindow Window(long n, long height, long width, int side, Device device, Generator generator)
    {
        var top = randint(0, height - side + 1, new[] { n }, dtype: ScalarType.Int64, device: device, generator: generator);
        var left = randint(0, width - side + 1, new[] { n }, dtype: ScalarType.Int64, device: device, generator: generator);
        var rows = ScalarOps.Arange(height, dtype: ScalarType.Int64, device: device).reshape(1, 1, height, 1);
        var cols = ScalarOps.Arange(width, dtype: ScalarType.Int64, device: device).reshape(1, 1, 1, width);
        var t = top.reshape(n, 1, 1, 1);
        var l = left.reshape(n, 1, 1, 1);
        var mask = rows.ge(t).logical_and(rows.lt(t.Plus(side))).logical_and(cols.ge(l)).logical_and(cols.lt(l.Plus(side)));
        return new SquareWindow(mask, top, left);
    }

    // The side x side pattern (or its transpose, a coin per image) placed at each image's corner: [n, 1, H, W].
    private Tensor PlacedPattern(long n, long height, long width, int side, Tensor top, Tensor left, Tensor like, Generator generator)
    {
        var patterns = tensor(_patterns.GetOrAdd(side, Pattern), dtype: like.dtype, device: like.device);
        var rows = ScalarOps.Arange(height, dtype: ScalarType.Int64, device: like.device).reshape(1, 1, height, 1);
        var cols = ScalarOps.Arange(width, dtype: ScalarType.Int64, device: like.device).reshape(1, 1, 1, width);
        var r = rows - top.reshape(n, 1, 1, 1);
        var c = cols - left.reshape(n, 1, 1, 1);
        using var zeroScalar = 0.ToScalar();
        using var sideScalar = side.ToScalar();
        var inside = r.ge(zeroScalar).logical_and(r.lt(sideScalar)).logical_and(c.ge(zeroScalar)).logical_and(c.lt(sideScalar));
        var transpose = randint(0, 2, new[] { n, 1, 1, 1 }, dtype: ScalarType.Int64, device: like.device, generator: generator);
        var index = transpose.Times(side * side).Plus(r.Clamp(0, side - 1).Times(side)).Plus(c.Clamp(0, side - 1));
        return where(inside, patterns.take(index), zeros(1, dtype: like.dtype, device: like.device));
    }

    // The published L2 pattern for a side s: the upper half a stack of centred rectangles, the lower half the negative
    // of another, each of unit norm, the whole of unit norm; kept with its transpose as [2 * s * s].
    private static double[] Pattern(int side)
    {
        var p = new double[side, side];
        var upper = side / 2;
        Rectangles(p, 0, upper, side, +1);
        Rectangles(p, upper, side - upper, side, -1);
        double total = 0;
        foreach (var v in p) total += v * v;
        var scale = 1 / Math.Sqrt(total);
        var flat = new double[2 * side * side];
        for (var i = 0; i < side; i++)
        for (var j = 0; j < side; j++)
        {
            flat[i * side + j] = p[i, j] * scale;
            flat[side * side + j * side + i] = p[i, j] * scale;
        }
        return flat;
    }

    // Rows [row0, row0 + height) of p get sign * (a unit-norm block whose value at distance d from the block's centre,
    // in the max-norm, is the sum over k = d .. K-1 of 1/(k+1)^2, K = max(height, width) / 2 + 1).
    private static void Rectangles(double[,] p, int row0, int height, int width, int sign)
    {
        if (height == 0) return;
        int cr = height / 2, cc = width / 2, k = Math.Max(cr + 1, cc + 1);
        double norm = 0;
        var block = new double[height, width];
        for (var i = 0; i < height; i++)
        for (var j = 0; j < width; j++)
        {
            var d = Math.Max(Math.Abs(i - cr), Math.Abs(j - cc));
            double v = 0;
            for (var q = d; q < k; q++) v += 1.0 / ((q + 1) * (q + 1));
            block[i, j] = v;
            norm += v * v;
        }
        norm = Math.Sqrt(norm);
        for (var i = 0; i < height; i++)
        for (var j = 0; j < width; j++)
            p[row0 + i, j] = sign * block[i, j] / norm;
    }

    private static Tensor RandomSigns(long[] shape, Tensor like, Generator generator) =>
        randint(0, 2, shape, dtype: like.dtype, device: like.device, generator: generator).Times(2).Minus(1);
}
