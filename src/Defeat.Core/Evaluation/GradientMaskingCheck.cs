namespace Defeat.Evaluation;

/// <summary>
/// Whether a gradient-free attack beat the white-box attacks of an evaluation by more than noise.
/// </summary>
/// <param name="GradientFreeAttacks">The gradient-free attacks compared (their per-image worst case).</param>
/// <param name="Comparison">Per image, robust under every white-box attack (A) against robust under the gradient-free ones
/// (B): <see cref="PairedComparison.OnlyA"/> counts images only the gradient-free attacks broke, and the difference is the
/// accuracy the gradient-free attacks took away beyond the white-box ones (negative when the white-box attacks are stronger).</param>
/// <param name="Suspected">The gradient-free attacks did better than the white-box ones by more than
/// <see cref="GradientMaskingCheck.Tolerance"/> and the exact McNemar test says it is not chance (p &lt; 0.05).</param>
public sealed record GradientMaskingVerdict(IReadOnlyList<string> GradientFreeAttacks, PairedComparison Comparison, bool Suspected)
{
    /// <summary>One line for a log or a report.</summary>
    public override string ToString() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{(Suspected ? "gradient masking suspected" : "no sign of gradient masking")}: {string.Join(", ", GradientFreeAttacks)} broke " +
        $"{Comparison.OnlyA} images every white-box attack left standing and left {Comparison.OnlyB} standing that a white-box attack broke " +
        $"(difference {Comparison.Difference.Mean * 100:+0.0;-0.0;0.0} points, McNemar p = {Comparison.McNemarP:0.###})");
}

/// <summary>
/// The sanity check that catches gradient masking (Athalye et al., 2018; Croce and Hein, 2020): an attack that never
/// looks at gradients (<see cref="Attacks.SquareAttack"/>) must not be stronger than the gradient-based ones. When it is,
/// the gradient attacks are being misled (a quantizer, a non-differentiable step, saturated logits) and their robust
/// accuracy alone overstates the defence.
/// </summary>
/// <remarks>
/// The reference AutoAttack warns when Square lowers the robust accuracy left by its gradient attacks by more than
/// 0.2 % of the images. With per-image outcomes of both kinds of attack on the same images the check here also asks for
/// a paired test, so that one or two lucky images of a small evaluation do not raise the flag: suspected when the
/// gradient-free attacks' accuracy is below the white-box worst case by more than <see cref="Tolerance"/> and the exact
/// McNemar p-value of the discordant images is below 0.05.
/// </remarks>
public static class GradientMaskingCheck
{
    /// <summary>Share of the images by which a gradient-free attack may beat the white-box ones before it counts (0.2 %, the reference's).</summary>
    public const double Tolerance = 0.002;

    /// <summary>Significance level of the paired test.</summary>
    public const double Alpha = 0.05;

    /// <summary>Compares per-image outcomes on the same images, in the same order.</summary>
    /// <param name="whiteBoxRobust">Per image: robust under every white-box (gradient-based) attack.</param>
    /// <param name="gradientFreeRobust">Per image: robust under every gradient-free attack.</param>
    /// <param name="gradientFreeAttacks">Names of the gradient-free attacks, for the report.</param>
    /// <exception cref="ArgumentException">The lists differ in length or are empty.</exception>
    public static GradientMaskingVerdict Assess(IReadOnlyList<bool> whiteBoxRobust, IReadOnlyList<bool> gradientFreeRobust,
        IReadOnlyList<string> gradientFreeAttacks)
    {
        ArgumentNullException.ThrowIfNull(gradientFreeAttacks);
        var comparison = StudyStatistics.Compare(whiteBoxRobust, gradientFreeRobust);
        bool suspected = comparison.Difference.Mean > Tolerance && comparison.OnlyA > comparison.OnlyB && comparison.McNemarP < Alpha;
        return new GradientMaskingVerdict(gradientFreeAttacks, comparison, suspected);
    }
}
