using Defeat.Evaluation;
using Defeat.Shield;
using Defeat.Training;
using static TorchSharp.torch;

namespace Defeat.Samples.Shared;

/// <summary>How the samples attack and score a trained model.</summary>
public static class DefeatSubjects
{
    /// <summary>DEFEAT is attacked through the fused logits and through each branch; the baselines have one output.</summary>
    /// <param name="name">The method's name in the table.</param>
    /// <param name="model">The trained model (in evaluation mode).</param>
    public static EvaluationSubject Create(string name, DefeatModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        // Prompts are fixed after training: encode them once for every attack step.
        Tensor text;
        using (no_grad()) text = model.TextFeatures();
        Func<Tensor, Tensor> fused = x => model.Logits(x, Branch.Fused, text);
        if (model.Shield is null) return new EvaluationSubject(name, fused);
        Func<Tensor, Tensor> clean = x => model.Logits(x, Branch.Clean, text), robust = x => model.Logits(x, Branch.Robust, text);
        return new EvaluationSubject(name, fused,
            attackTargets: new Dictionary<string, Func<Tensor, Tensor>> { ["fused"] = fused, ["clean"] = clean, ["robust"] = robust },
            branches: new Dictionary<string, Func<Tensor, Tensor>> { ["clean"] = clean, ["robust"] = robust },
            codeIndices: x =>
            {
                using var features = model.Backbone.EncodeImage(x);
                using var shielded = model.Shield.Shield(features.GridFeatures);
                return shielded.Indices.alias();
            },
            codebookSize: model.Shield is PerturbShield s ? s.Options.CodebookSize : 512);
    }
}
