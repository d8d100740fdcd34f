using static TorchSharp.torch;

namespace Defeat.Evaluation;

/// <summary>
/// A classifier as the <see cref="RobustnessEvaluator"/> sees it: what it predicts, which logits an
/// attacker may aim at, which extra branches to score, and (for a quantizing defence) its codes.
/// </summary>
/// <remarks>
/// A defence with several branches (DEFEAT's clean and robust branches) can look robust to an
/// attack on its fused output while a better-aimed attack breaks it. Listing every branch in
/// <see cref="AttackTargets"/> makes the evaluator attack each one, always scoring
/// <see cref="Predict"/>, and count an image as robust only if it survives them all.
/// </remarks>
public sealed class EvaluationSubject
{
    /// <summary>Creates a subject.</summary>
    /// <param name="name">Name shown in reports.</param>
    /// <param name="predict">Images <c>[B, C, H, W]</c> in [0, 1] to the logits <c>[B, classes]</c> that make the prediction.</param>
    /// <param name="attackTargets">Logits an attack may aim at, by name; just <paramref name="predict"/> (as "fused") when null.</param>
    /// <param name="branches">Extra logits whose clean accuracy is reported, by name.</param>
    /// <param name="codeIndices">Images to int64 code indices <c>[B, N]</c>, for the codeword flip rate and usage.</param>
    /// <param name="codebookSize">Number of codewords, needed with <paramref name="codeIndices"/>.</param>
    public EvaluationSubject(string name, Func<Tensor, Tensor> predict,
        IReadOnlyDictionary<string, Func<Tensor, Tensor>>? attackTargets = null,
        IReadOnlyDictionary<string, Func<Tensor, Tensor>>? branches = null,
        Func<Tensor, Tensor>? codeIndices = null, int codebookSize = 0)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(predict);
        if (attackTargets is { Count: 0 })
            throw new ArgumentException("attackTargets is empty; expected at least one target, or null for the prediction itself.", nameof(attackTargets));
        if (codeIndices is not null && codebookSize < 1)
            throw new ArgumentOutOfRangeException(nameof(codebookSize), codebookSize, $"{nameof(codebookSize)} must be >= 1 when codeIndices is given, got {codebookSize}.");
        Name = name;
        Predict = predict;
        AttackTargets = attackTargets ?? new Dictionary<string, Func<Tensor, Tensor>> { ["fused"] = predict };
        Branches = branches ?? new Dictionary<string, Func<Tensor, Tensor>>();
        CodeIndices = codeIndices;
        CodebookSize = codebookSize;
    }

    /// <summary>Name shown in reports.</summary>
    public string Name { get; }

    /// <summary>Images to the logits that make the prediction.</summary>
    public Func<Tensor, Tensor> Predict { get; }

    /// <summary>Logits an attack aims at, by name; the first is the headline attack.</summary>
    public IReadOnlyDictionary<string, Func<Tensor, Tensor>> AttackTargets { get; }

    /// <summary>Extra logits whose clean accuracy is reported.</summary>
    public IReadOnlyDictionary<string, Func<Tensor, Tensor>> Branches { get; }

    /// <summary>Images to code indices <c>[B, N]</c>, or null for a model without a quantizer.</summary>
    public Func<Tensor, Tensor>? CodeIndices { get; }

    /// <summary>Number of codewords behind <see cref="CodeIndices"/>.</summary>
    public int CodebookSize { get; }
}
