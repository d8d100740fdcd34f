namespace Defeat.Evaluation;

/// <summary>A mean with its two-sided confidence interval.</summary>
/// <param name="Mean">The sample mean.</param>
/// <param name="Lower">Lower end of the interval.</param>
/// <param name="Upper">Upper end of the interval.</param>
/// <param name="Count">How many values the mean is over.</param>
public sealed record Interval(double Mean, double Lower, double Upper, int Count)
{
    /// <summary>Half the interval's width (0 for a single value, whose interval is undefined and shown as the value itself).</summary>
    public double HalfWidth => (Upper - Lower) / 2;
}

/// <summary>
/// Paired comparison of two classifiers on the same images: the discordant counts, the difference of
/// accuracies with its Wald interval for paired proportions, and the exact McNemar test.
/// </summary>
/// <param name="Images">Pairs compared.</param>
/// <param name="OnlyA">Images that A gets right and B wrong (<c>b</c> in McNemar's table).</param>
/// <param name="OnlyB">Images that B gets right and A wrong (<c>c</c>).</param>
/// <param name="Difference">Accuracy of A minus accuracy of B, <c>(b - c) / n</c>, with its 95 % interval.</param>
/// <param name="McNemarP">Two-sided exact McNemar p-value: the binomial test of <c>b</c> against Bin(b + c, 1/2).</param>
public sealed record PairedComparison(int Images, int OnlyA, int OnlyB, Interval Difference, double McNemarP);

/// <summary>The statistics a multi-seed robustness study reports: intervals over seeds and paired tests over images.</summary>
public static class StudyStatistics
{
    // Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
    private static readonly double[] T95 =
    [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];

    /// <summary>The two-sided 95 % quantile of Student's t with <paramref name="degreesOfFreedom"/> degrees of freedom
    /// (tabulated to 30; above that 2.042 falls toward the normal 1.960 as 1.96 + 2.4/df, within 0.002 of the exact value).</summary>
    /// <param name="degreesOfFreedom">At least 1.</param>
    public static double StudentT95(int degreesOfFreedom)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(degreesOfFreedom, 1);
        return degreesOfFreedom <= T95.Length ? T95[degreesOfFreedom - 1] : 1.96 + 2.4 / degreesOfFreedom;
    }

    /// <summary>Mean and 95 % Student-t interval of <paramref name="values"/> (e.g. one accuracy per seed). One value gives
    /// a zero-width interval at the value: report it as "one seed", not as certainty.</summary>
    /// <param name="values">At least one finite value.</param>
    public static Interval MeanInterval(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count == 0)
            throw new ArgumentException("values is empty; expected at least one value.", nameof(values));
        if (values.Any(v => !double.IsFinite(v)))
            throw new ArgumentException($"values must be finite, got [{string.Join(", ", values)}].", nameof(values));
        double mean = values.Average();
        if (values.Count == 1) return new Interval(mean, mean, mean, 1);
        double variance = values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1);
        double half = StudentT95(values.Count - 1) * Math.Sqrt(variance / values.Count);
        return new Interval(mean, mean - half, mean + half, values.Count);
    }

    /// <summary>Two-sided exact McNemar p-value for <paramref name="onlyA"/> and <paramref name="onlyB"/> discordant pairs:
    /// <c>min(1, 2 P[X &lt;= min(b, c)])</c> with <c>X ~ Bin(b + c, 1/2)</c>; 1 when there is no discordant pair.</summary>
    /// <param name="onlyA">Pairs that only A gets right.</param>
    /// <param name="onlyB">Pairs that only B gets right.</param>
    public static double McNemarExactP(int onlyA, int onlyB)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(onlyA);
        ArgumentOutOfRangeException.ThrowIfNegative(onlyB);
        int n = onlyA + onlyB, k = Math.Min(onlyA, onlyB);
        if (n == 0) return 1;
        // log pmf(0) = -n ln 2; pmf(i + 1) = pmf(i) (n - i) / (i + 1): summed in log space, no overflow for large n.
        double logPmf = -n * Math.Log(2), tail = 0;
        for (int i = 0; i <= k; i++)
        {
            tail += Math.Exp(logPmf);
            logPmf += Math.Log(n - i) - Math.Log(i + 1);
        }
        return Math.Min(1, 2 * tail);
    }

    /// <summary>Compares per-image correctness of A and B on the same images (same order).</summary>
    /// <param name="a">A's per-image correctness.</param>
    /// <param name="b">B's per-image correctness, same length.</param>
    public static PairedComparison Compare(IReadOnlyList<bool> a, IReadOnlyList<bool> b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Count != b.Count)
            throw new ArgumentException($"b must have one entry per image of a ({a.Count}), got {b.Count}.", nameof(b));
        if (a.Count == 0)
            throw new ArgumentException("a is empty; expected at least one image.", nameof(a));
        int onlyA = 0, onlyB = 0;
        for (int i = 0; i < a.Count; i++)
        {
            if (a[i] && !b[i]) onlyA++;
            else if (b[i] && !a[i]) onlyB++;
        }
        double n = a.Count, d = (onlyA - onlyB) / n;
        // Wald interval of a difference of paired proportions: Var(d) = (b + c - (b - c)^2 / n) / n^2.
        double half = 1.96 * Math.Sqrt(Math.Max(0, onlyA + onlyB - (onlyA - onlyB) * (double)(onlyA - onlyB) / n)) / n;
        return new PairedComparison(a.Count, onlyA, onlyB, new Interval(d, d - half, d + half, a.Count), McNemarExactP(onlyA, onlyB));
    }
}
