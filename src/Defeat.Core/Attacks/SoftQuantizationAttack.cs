using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>
/// PGD through a soft-VQ surrogate of a quantizing defence (the standard adaptive attack on quantisation beside
/// straight-through BPDA): the model's forward pass stays exact, while its backward pass replaces the hard
/// nearest-code choice by a softmin over distances. PGD runs once per temperature, and each image keeps the
/// adversarial example of the temperature that did best on the attack's own objective.
/// </summary>
/// <remarks>
/// <para>The attack knows only "images to logits" plus a switch: <c>useSurrogate(tau)</c> must make the model's
/// gradients come from the surrogate at temperature tau until the returned object is disposed (for DEFEAT,
/// <see cref="Defeat.Shield.IPerturbShield.UseSoftQuantization"/>). The switch is held only while the model runs its
/// forward pass, which is when the surrogate enters the autograd graph.</para>
/// <para>Every temperature uses the same PGD options (so the same random start). Per image the result is, as among
/// <see cref="PgdAttack"/>'s restarts, a successful example over an unsuccessful one, then the one with the highest
/// objective (<see cref="PgdOptions.Loss"/>), scored on the exact model outside the switch; ties keep the earlier
/// temperature.</para>
/// </remarks>
public sealed class SoftQuantizationAttack : IAdversarialAttack
{
    private readonly Func<double, IDisposable> _useSurrogate;

    /// <summary>Creates the attack.</summary>
    /// <param name="pgd">The PGD run for each temperature.</param>
    /// <param name="temperatures">The surrogate's temperatures (at least one, each finite and &gt; 0).</param>
    /// <param name="useSurrogate">Turns the model's surrogate gradient on at a temperature until disposed.</param>
    /// <exception cref="ArgumentException"><paramref name="temperatures"/> is empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A temperature is not a finite number &gt; 0, or a PGD option is out of range.</exception>
    public SoftQuantizationAttack(PgdOptions pgd, IReadOnlyList<double> temperatures, Func<double, IDisposable> useSurrogate)
    {
        ArgumentNullException.ThrowIfNull(pgd);
        ArgumentNullException.ThrowIfNull(temperatures);
        ArgumentNullException.ThrowIfNull(useSurrogate);
        pgd.Validate();
        if (temperatures.Count == 0)
            throw new ArgumentException("temperatures is empty; expected at least one temperature.", nameof(temperatures));
        foreach (var t in temperatures)
            if (!(t > 0) || double.IsInfinity(t))
                throw new ArgumentOutOfRangeException(nameof(temperatures), t, $"Every temperature must be a finite number > 0, got {t}.");
        Options = pgd;
        Temperatures = temperatures.ToArray();
        _useSurrogate = useSurrogate;
    }

    /// <summary>The PGD options of each run.</summary>
    public PgdOptions Options { get; }

    /// <summary>The temperatures tried, in order.</summary>
    public IReadOnlyList<double> Temperatures { get; }

    /// <inheritdoc />
    public Tensor Perturb(Func<Tensor, Tensor> model, Tensor images, Tensor labels, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        var pgd = new PgdAttack(Options);
        using var outer = NewDisposeScope();
        Tensor? best = null, bestSuccess = null, bestObjective = null;
        foreach (var temperature in Temperatures)
        {
            Func<Tensor, Tensor> surrogate = x =>
            {
                using var _ = _useSurrogate(temperature);
                return model(x);
            };
            // PgdAttack checks the inputs and returns an empty copy for an empty batch.
            var adv = pgd.Perturb(surrogate, images, labels, cancellationToken);
            if (adv.shape[0] == 0) return adv.MoveToOuterDisposeScope();
            using (no_grad())
            {
                var logits = model(adv);
                if (logits.dim() != 2 || logits.shape[0] != adv.shape[0])
                    throw new ArgumentException($"The model must return logits [B={adv.shape[0]}, classes], got [{string.Join(", ", logits.shape)}].", nameof(model));
                var objective = AttackObjectives.PerSample(logits, labels, Options.Loss, Options.Targeted);
                var success = AttackObjectives.Success(logits, labels, Options.Targeted);
                if (best is null)
                {
                    (best, bestSuccess, bestObjective) = (adv, success, objective);
                    continue;
                }
                var better = success.logical_and(bestSuccess!.logical_not())
                    .logical_or(success.eq(bestSuccess!).logical_and(objective.gt(bestObjective!)));
                var shape = new long[adv.dim()];
                Array.Fill(shape, 1L);
                shape[0] = adv.shape[0];
                best = where(better.reshape(shape), adv, best);
                bestSuccess = where(better, success, bestSuccess!);
                bestObjective = where(better, objective, bestObjective!);
            }
        }
        return best!.MoveToOuterDisposeScope();
    }
}
