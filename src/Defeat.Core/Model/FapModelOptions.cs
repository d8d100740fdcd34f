namespace Defeat.Model;

/// <summary>Options of <see cref="FapModel"/>.</summary>
public sealed record FapModelOptions
{
    /// <summary>Weight lambda of the adversarial term (<see cref="FapLoss.AdversarialTerm"/>) beside the clean cross-entropy: 1 in FAP.</summary>
    public double AdversarialWeight { get; init; } = 1.0;

    /// <summary>Checks every option; throws <see cref="ArgumentOutOfRangeException"/> naming the first bad one.</summary>
    public void Validate()
    {
        if (!(AdversarialWeight >= 0) || double.IsInfinity(AdversarialWeight))
            throw new ArgumentOutOfRangeException(nameof(AdversarialWeight), AdversarialWeight, $"{nameof(AdversarialWeight)} must be a finite number >= 0, got {AdversarialWeight}.");
    }
}
