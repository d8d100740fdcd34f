using Defeat.Validation;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Defeat.Fusion;

/// <summary>
/// DEFEAT's logit fusion and three alternatives (see <see cref="FusionMode"/>).
/// </summary>
/// <remarks>
/// Only <see cref="FusionMode.LearnableAlpha"/> has a parameter (<c>alpha_logit</c>, a scalar); the other
/// modes have none, so their state dict is empty. Every mode is differentiable in both inputs, so an
/// attack aimed at the fused output sees the true gradient (the adaptive weights are not detached).
/// </remarks>
public sealed class LogitFusion : nn.Module<Tensor, Tensor, Tensor>, ILogitFusion
{
    private readonly Parameter? alpha_logit;

    /// <summary>Creates the fusion.</summary>
    /// <param name="options">Fusion options; <see cref="LogitFusionOptions"/> defaults (logit average, alpha 0.5) when null.</param>
    public LogitFusion(LogitFusionOptions? options = null) : base(nameof(LogitFusion))
    {
        Options = options ?? new LogitFusionOptions();
        Options.Validate();
        if (Options.Mode == FusionMode.LearnableAlpha)
            alpha_logit = new Parameter(tensor(Math.Log(Options.Alpha / (1 - Options.Alpha)), ScalarType.Float32));
        RegisterComponents();
    }

    /// <summary>The validated options.</summary>
    public LogitFusionOptions Options { get; }

    /// <summary>The clean branch's weight now: the fixed alpha, or sigmoid of the learned parameter (null in Adaptive mode, where it varies per sample).</summary>
    public double? CurrentAlpha => Options.Mode switch
    {
        FusionMode.LearnableAlpha => 1.0 / (1.0 + Math.Exp(-alpha_logit!.item<float>())),
        FusionMode.Adaptive => null,
        _ => Options.Alpha,
    };

    /// <inheritdoc />
    public Tensor Fuse(Tensor clean, Tensor robust) => call(clean, robust);

    /// <summary>Fuses <c>[B, classes]</c> clean and robust logits.</summary>
    /// <param name="clean">Clean-branch logits.</param>
    /// <param name="robust">Robust-branch logits.</param>
    public override Tensor forward(Tensor clean, Tensor robust)
    {
        ArgumentNullException.ThrowIfNull(clean);
        ArgumentNullException.ThrowIfNull(robust);
        TensorChecks.Require(clean, clean.dim() == 2, nameof(clean), "logits [B, classes]");
        TensorChecks.Require(robust, robust.shape.SequenceEqual(clean.shape) && robust.dtype == clean.dtype, nameof(robust),
            $"logits of the clean logits' dtype and shape {TensorChecks.Describe(clean)}");
        TensorChecks.RequireDevice(robust, clean.device, nameof(robust), "the clean logits");

        var alpha = Options.Alpha;
        switch (Options.Mode)
        {
            case FusionMode.LogitAverage:
                return clean.Times(alpha).Plus(robust.Times(1 - alpha));

            case FusionMode.ProbabilityAverage:
            {
                // log(a p + (1-a) q) computed as a log-sum-exp of log-probabilities, stable for large logits.
                var terms = new List<Tensor>(2);
                if (alpha > 0) terms.Add(nn.functional.log_softmax(clean, 1).Plus(Math.Log(alpha)));
                if (alpha < 1) terms.Add(nn.functional.log_softmax(robust, 1).Plus(Math.Log(1 - alpha)));
                return terms.Count == 1 ? terms[0] : stack(terms, 0).logsumexp(0);
            }

            case FusionMode.LearnableAlpha:
            {
                var a = alpha_logit!.to(clean.dtype, clean.device).sigmoid();
                return (a * clean).Plus(a.RSub(1) * robust);
            }

            case FusionMode.Adaptive:
            {
                var scores = stack(new[] { Confidence(clean), Confidence(robust) }, 1).Over(Options.Temperature);
                var weights = scores.softmax(1);
                return (weights[.., 0..1] * clean).Plus(weights[.., 1..2] * robust);
            }

            default:
                throw new InvalidOperationException($"Unknown fusion mode {Options.Mode}.");
        }
    }

    private Tensor Confidence(Tensor logits)
    {
        var logProbabilities = nn.functional.log_softmax(logits, 1);
        return Options.Confidence == ConfidenceMeasure.MaxProbability
            ? logProbabilities.max(1).values.exp()
            : (logProbabilities.exp() * logProbabilities).sum(1);
    }
}
