namespace Defeat.Evaluation;

/// <summary>Robustness at one attack radius.</summary>
/// <param name="Epsilon">The attack's radius, in [0, 1] pixel units.</param>
/// <param name="RobustAccuracyByTarget">Accuracy of the prediction on images attacked through each target (by attack name when RobustnessEvaluatorOptions.Attacks is set).</param>
/// <param name="RobustAccuracy">Share of images classified correctly under every target's attack (the per-sample worst case).</param>
/// <param name="HarmonicMean">H = 2 * clean * robust / (clean + robust), with the worst-case robust accuracy; 0 when both are 0.</param>
/// <param name="FlipRate">Share of patch codes that differ between a clean image and its attacked version (the first attack: the first target, or the first of RobustnessEvaluatorOptions.Attacks); null without a quantizer.</param>
/// <param name="RobustCorrect">Per image, in test-set order: classified correctly under every attack (the per-sample worst
/// case behind <see cref="RobustAccuracy"/>); the input of paired comparisons such as <see cref="StudyStatistics.Compare"/>.</param>
/// <param name="RobustCorrectByAttack">Per attack name, per image: classified correctly under that attack (under that attack
/// and every earlier one when RobustnessEvaluatorOptions.SurvivorsOnly is set).</param>
/// <param name="GradientMasking">The gradient-free attacks against the white-box ones (<see cref="GradientMaskingCheck"/>);
/// null unless the attack list has both kinds.</param>
public sealed record EpsilonResult(
    double Epsilon,
    IReadOnlyDictionary<string, double> RobustAccuracyByTarget,
    double RobustAccuracy,
    double HarmonicMean,
    double? FlipRate,
    IReadOnlyList<bool>? RobustCorrect = null,
    IReadOnlyDictionary<string, IReadOnlyList<bool>>? RobustCorrectByAttack = null,
    GradientMaskingVerdict? GradientMasking = null);

/// <summary>How many codewords a quantizer used on the clean evaluation images.</summary>
/// <param name="CodesUsed">Codewords chosen at least once.</param>
/// <param name="Perplexity">exp of the entropy of code usage: the effective number of codes.</param>
public sealed record CodeUsage(int CodesUsed, double Perplexity);

/// <summary>Everything the <see cref="RobustnessEvaluator"/> measured for one subject.</summary>
/// <param name="Name">The subject's name.</param>
/// <param name="Images">Number of evaluation images.</param>
/// <param name="CleanAccuracy">Accuracy of the prediction on clean images.</param>
/// <param name="BranchAccuracy">Clean accuracy of each extra branch.</param>
/// <param name="Codes">Code usage on clean images; null without a quantizer.</param>
/// <param name="ByEpsilon">Results for each attack radius, in the order asked.</param>
/// <param name="CleanCorrect">Per image, in test-set order: the clean prediction is right.</param>
public sealed record RobustnessReport(
    string Name,
    long Images,
    double CleanAccuracy,
    IReadOnlyDictionary<string, double> BranchAccuracy,
    CodeUsage? Codes,
    IReadOnlyList<EpsilonResult> ByEpsilon,
    IReadOnlyList<bool>? CleanCorrect = null)
{
    /// <summary>Harmonic mean of a clean and a robust accuracy; 0 when both are 0.</summary>
    public static double Harmonic(double clean, double robust) =>
        clean + robust <= 0 ? 0 : 2 * clean * robust / (clean + robust);
}
