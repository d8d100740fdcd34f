using System.Globalization;
using System.Text;

namespace Defeat.Attacks;

/// <summary>What one attack of an <see cref="AutoAttack"/> run did.</summary>
/// <param name="Name">The stage's name.</param>
/// <param name="Attacked">Images it attacked: those still robust when it started.</param>
/// <param name="Broken">Of those, images it fooled within the ball.</param>
/// <param name="RobustAccuracy">Fraction of all images still robust after it (cumulative over the stages so far).</param>
/// <param name="Elapsed">Wall-clock time it took.</param>
/// <param name="Skipped">Why it did not run (too few classes), or null.</param>
public sealed record AutoAttackStageReport(string Name, long Attacked, long Broken, double RobustAccuracy, TimeSpan Elapsed, string? Skipped = null);

/// <summary>
/// The outcome of an <see cref="AutoAttack"/> run: clean accuracy, robust accuracy after each attack, and the final
/// worst case (an image counts as robust only if no attack fooled it).
/// </summary>
/// <param name="Version">The version run.</param>
/// <param name="Epsilon">The radius.</param>
/// <param name="Norm">The ball's norm.</param>
/// <param name="Images">Images evaluated.</param>
/// <param name="CleanAccuracy">Fraction classified correctly without attack (only these are attacked).</param>
/// <param name="Stages">Each attack in order, with the robust accuracy after it.</param>
/// <param name="RobustAccuracy">The final robust accuracy: the worst case over all attacks.</param>
/// <param name="Warnings">Signs of an unreliable evaluation found on the way (probabilities instead of logits,
/// outputs that change between identical calls, Square breaking images the gradient attacks left standing).</param>
public sealed record AutoAttackReport(AutoAttackVersion Version, double Epsilon, AttackNorm Norm, long Images, double CleanAccuracy,
    IReadOnlyList<AutoAttackStageReport> Stages, double RobustAccuracy, IReadOnlyList<string> Warnings)
{
    /// <summary>A table as AutoAttack logs it: clean accuracy, then robust accuracy after each attack, then the warnings.</summary>
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        text.Append(c, $"AutoAttack {Version}, {Norm} eps={Epsilon:0.######} ({Epsilon * 255:0.##}/255), {Images} images\n");
        text.Append(c, $"  {"clean",-10} {CleanAccuracy,8:P2}\n");
        foreach (var s in Stages)
            text.Append(s.Skipped is null
                ? string.Create(c, $"  {s.Name,-10} {s.RobustAccuracy,8:P2}  ({s.Broken} of {s.Attacked} broken, {s.Elapsed.TotalSeconds:0.0} s)\n")
                : string.Create(c, $"  {s.Name,-10} {"skipped",8}  ({s.Skipped})\n"));
        text.Append(c, $"  {"robust",-10} {RobustAccuracy,8:P2}\n");
        foreach (var w in Warnings) text.Append(c, $"  warning: {w}\n");
        return text.ToString();
    }
}
