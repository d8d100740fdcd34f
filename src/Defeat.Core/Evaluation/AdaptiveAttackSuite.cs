using Defeat.Shield;
using Defeat.Attacks;
using Defeat.Model;
using static TorchSharp.torch;

namespace Defeat.Evaluation;

/// <summary>
/// Attacks that know DEFEAT's defence, for an adaptive evaluation (a quantizer is a classic source of gradient
/// masking): PGD on the fused logits, on the clean branch and on the robust branch separately, with the margin
/// and DLR losses, and with random restarts keeping each sample's worst case.
/// </summary>
/// <remarks>
/// <para>Attacking the robust branch differentiates through the vector quantizer's argmin with the
/// straight-through estimator the quantizer already uses in its forward (<c>z + (z_q - z).detach()</c>): the
/// gradient of the codeword is taken as the gradient of the encoder output. That is BPDA (Athalye et al.,
/// 2018) with the identity as the approximation of the argmin, so no separate BPDA attack is needed; the same
/// holds inside the fused logits. The soft-VQ surrogate attacks (<see cref="AdaptiveAttackOptions.SoftQuantizationTemperatures"/>)
/// replace that identity by the derivative of a softmin over the codewords, which sees how the code choice moves.</para>
/// <para>Run the list through <see cref="RobustnessEvaluatorOptions.Attacks"/> with <see cref="Subject(DefeatModel, string)"/>: the
/// evaluator reports each attack's accuracy and, as robust accuracy, the per-sample worst case over all of them.</para>
/// </remarks>
public static class AdaptiveAttackSuite
{
    /// <summary>Target name of the fused logits (DEFEAT's prediction).</summary>
    public const string Fused = "fused";

    /// <summary>Target name of the clean branch's logits.</summary>
    public const string Clean = "clean";

    /// <summary>Target name of the robust (shielded) branch's logits.</summary>
    public const string Robust = "robust";

    /// <summary>
    /// The named attacks: <c>pgd-ce/fused</c>, <c>pgd-margin/fused</c>, <c>pgd-dlr/fused</c> (3 classes or more),
    /// <c>pgd-ce-restarts/fused</c>, and with branches <c>pgd-ce/clean</c> and <c>pgd-ce/robust</c>.
    /// All are L-inf PGD from a random start with the options' steps and step size. When the options ask for them,
    /// AutoAttack's four attacks come first (<see cref="AdaptiveAttackOptions.IncludeAutoAttack"/>).
    /// </summary>
    /// <param name="classes">Number of classes (the DLR loss needs 3).</param>
    /// <param name="withBranches">Whether the subject has the <see cref="Clean"/> and <see cref="Robust"/> targets.</param>
    /// <param name="options">The budget; defaults when null.</param>
    public static IReadOnlyList<NamedAttack> Attacks(int classes, bool withBranches, AdaptiveAttackOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 1);
        options ??= new AdaptiveAttackOptions();
        options.Validate();

        Func<double, IAdversarialAttack> Pgd(AttackLoss loss, int restarts, ulong seedOffset) => eps => new PgdAttack(new PgdOptions
        {
            Epsilon = eps, StepSize = eps * options.StepFraction, Steps = options.Steps, RandomStart = true,
            Restarts = restarts, Loss = loss, Seed = options.Seed + seedOffset,
        });

        var list = options.IncludeAutoAttack ? AutoAttackStages(classes, options.Seed + 8).ToList() : [];
        list.Add(new("pgd-ce/fused", Fused, Pgd(AttackLoss.CrossEntropy, 1, 0)));
        if (withBranches)
        {
            list.Add(new("pgd-ce/clean", Clean, Pgd(AttackLoss.CrossEntropy, 1, 1)));
            list.Add(new("pgd-ce/robust", Robust, Pgd(AttackLoss.CrossEntropy, 1, 2)));
        }
        // The margin needs another class to compare with; with one class no attack can change the prediction.
        if (classes >= 2) list.Add(new("pgd-margin/fused", Fused, Pgd(AttackLoss.Margin, 1, 3)));
        if (options.IncludeDlr && classes >= 3) list.Add(new("pgd-dlr/fused", Fused, Pgd(AttackLoss.Dlr, 1, 4)));
        list.Add(new("pgd-ce-restarts/fused", Fused, Pgd(AttackLoss.CrossEntropy, options.Restarts, 5)));
        return list;
    }

    /// <summary>
    /// The four attacks of <see cref="AutoAttack"/>'s standard version (L-inf) as named attacks on <see cref="Fused"/>, in its
    /// order: <c>aa-apgd-ce/fused</c>, <c>aa-apgd-t/fused</c> (left out below 4 classes), <c>aa-fab-t/fused</c> and
    /// <c>aa-square/fused</c> (marked <see cref="NamedAttack.GradientFree"/>). Run with
    /// <see cref="RobustnessEvaluatorOptions.SurvivorsOnly"/>, they are AutoAttack.
    /// </summary>
    /// <param name="classes">Number of classes of the model.</param>
    /// <param name="seed">Seed of the four attacks.</param>
    public static IReadOnlyList<NamedAttack> AutoAttackStages(int classes, ulong seed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 1);
        AutoAttackOptions At(double eps) => new() { Epsilon = eps, Seed = seed };
        var stages = AutoAttack.Stages(At(4.0 / 255));
        var list = new List<NamedAttack>();
        for (int k = 0; k < stages.Count; k++)
        {
            if (classes < stages[k].MinimumClasses) continue;
            int stage = k; // the factory builds the stage at the evaluation's radius
            list.Add(new NamedAttack($"aa-{stages[k].Name}/fused", Fused, eps => AutoAttack.Stages(At(eps))[stage].Attack)
            {
                GradientFree = stages[k].Attack is SquareAttack,
            });
        }
        return list;
    }

    /// <summary>
    /// The suite for <paramref name="model"/>: its class count and whether it has the shield; with the shield and
    /// <see cref="AdaptiveAttackOptions.SoftQuantizationTemperatures"/> set, also <c>pgd-softvq/fused</c> and
    /// <c>pgd-softvq/robust</c> (cross-entropy PGD through the soft-VQ surrogate, <see cref="SoftQuantizationAttack"/>).
    /// </summary>
    /// <param name="model">The trained model.</param>
    /// <param name="options">The budget; defaults when null.</param>
    public static IReadOnlyList<NamedAttack> Attacks(DefeatModel model, AdaptiveAttackOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new AdaptiveAttackOptions();
        var list = Attacks(model.PromptLearner.ClassNames.Count, model.Shield is not null, options).ToList();
        if (model.Shield is { } shield && options.SoftQuantizationTemperatures.Count > 0)
            list.AddRange(SoftQuantizationAttacks(shield, options));
        return list;
    }

    /// <summary>The suite for a FAP model: its class count, no branches.</summary>
    /// <param name="model">The trained model.</param>
    /// <param name="options">The budget; defaults when null.</param>
    public static IReadOnlyList<NamedAttack> Attacks(FapModel model, AdaptiveAttackOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Attacks(model.PromptLearner.ClassNames.Count, withBranches: false, options);
    }

    /// <summary>The suite for any model of the library (<see cref="DefeatModel"/> or <see cref="FapModel"/>).</summary>
    /// <param name="model">The trained model.</param>
    /// <param name="options">The budget; defaults when null.</param>
    /// <exception cref="ArgumentException">Another kind of model (build its list with <see cref="Attacks(int, bool, AdaptiveAttackOptions?)"/>).</exception>
    public static IReadOnlyList<NamedAttack> Attacks(ITrainableClassifier model, AdaptiveAttackOptions? options = null) => model switch
    {
        DefeatModel defeat => Attacks(defeat, options),
        FapModel fap => Attacks(fap, options),
        null => throw new ArgumentNullException(nameof(model)),
        _ => throw new ArgumentException($"No suite for a {model.GetType().Name}; expected a DefeatModel or a FapModel, or use Attacks(classes, withBranches, options).", nameof(model)),
    };

    private static IEnumerable<NamedAttack> SoftQuantizationAttacks(IPerturbShield shield, AdaptiveAttackOptions options)
    {
        Func<double, IAdversarialAttack> Soft(ulong seedOffset) => eps => new SoftQuantizationAttack(new PgdOptions
        {
            Epsilon = eps, StepSize = eps * options.StepFraction, Steps = options.Steps, RandomStart = true,
            Loss = AttackLoss.CrossEntropy, Seed = options.Seed + seedOffset,
        }, options.SoftQuantizationTemperatures, shield.UseSoftQuantization);
        yield return new NamedAttack("pgd-softvq/fused", Fused, Soft(6));
        yield return new NamedAttack("pgd-softvq/robust", Robust, Soft(7));
    }

    /// <summary>
    /// <paramref name="model"/> as an evaluation subject: prediction and target <see cref="Fused"/>, and with the shield
    /// the targets and branches <see cref="Clean"/> and <see cref="Robust"/> and the shield's code indices. The text
    /// features are encoded once here (the prompts do not change while the model is evaluated); the model is set to eval mode.
    /// </summary>
    /// <param name="model">The trained model.</param>
    /// <param name="name">Name shown in reports.</param>
    public static EvaluationSubject Subject(DefeatModel model, string name = "defeat")
    {
        ArgumentNullException.ThrowIfNull(model);
        model.eval();
        Tensor text;
        using (no_grad()) text = model.TextFeatures().detach();
        Func<Tensor, Tensor> fused = x => model.Logits(x, Branch.Fused, text);
        if (model.Shield is null) return new EvaluationSubject(name, fused);
        Func<Tensor, Tensor> clean = x => model.Logits(x, Branch.Clean, text), robust = x => model.Logits(x, Branch.Robust, text);
        return new EvaluationSubject(name, fused,
            attackTargets: new Dictionary<string, Func<Tensor, Tensor>> { [Fused] = fused, [Clean] = clean, [Robust] = robust },
            branches: new Dictionary<string, Func<Tensor, Tensor>> { [Clean] = clean, [Robust] = robust },
            codeIndices: model.CodeIndices,
            codebookSize: model.Shield.CodebookSize);
    }

    /// <summary><paramref name="model"/> as an evaluation subject: its prediction (prompts and text features built once,
    /// <see cref="FapModel.Predictor"/>) is the one target, <see cref="Fused"/>. The model is set to eval mode.</summary>
    /// <param name="model">The trained model.</param>
    /// <param name="name">Name shown in reports.</param>
    public static EvaluationSubject Subject(FapModel model, string name = "fap")
    {
        ArgumentNullException.ThrowIfNull(model);
        model.eval();
        return new EvaluationSubject(name, model.Predictor());
    }

    /// <summary>Any model of the library (<see cref="DefeatModel"/> or <see cref="FapModel"/>) as an evaluation subject.</summary>
    /// <param name="model">The trained model.</param>
    /// <param name="name">Name shown in reports.</param>
    /// <exception cref="ArgumentException">Another kind of model (build its <see cref="EvaluationSubject"/> directly).</exception>
    public static EvaluationSubject Subject(ITrainableClassifier model, string name) => model switch
    {
        DefeatModel defeat => Subject(defeat, name),
        FapModel fap => Subject(fap, name),
        null => throw new ArgumentNullException(nameof(model)),
        _ => throw new ArgumentException($"No subject for a {model.GetType().Name}; expected a DefeatModel or a FapModel, or build an EvaluationSubject.", nameof(model)),
    };
}
