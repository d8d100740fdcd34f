using Defeat.Validation;

namespace Defeat.Prompting;

/// <summary>Options of <see cref="PromptLearner"/>.</summary>
public sealed record PromptLearnerOptions
{
    /// <summary>Number M of learned context vectors when they start random (16 in DEFEAT); ignored with <see cref="ContextInit"/>.</summary>
    public int ContextLength { get; init; } = 16;

    /// <summary>A phrase (e.g. "a photo of a") whose token embeddings start the context; M becomes its token count. Null: random N(0, InitStd).</summary>
    public string? ContextInit { get; init; }

    /// <summary>Standard deviation of the random context initialisation (0.02 in CoOp and DEFEAT).</summary>
    public double InitStd { get; init; } = 0.02;

    /// <summary>One context per class (true) or one shared by all classes (false, DEFEAT).</summary>
    public bool ClassSpecificContext { get; init; }

    /// <summary>Where the class name goes relative to the context.</summary>
    public ClassTokenPosition ClassTokenPosition { get; init; } = ClassTokenPosition.End;

    /// <summary>Hand-written templates of the text regulariser and of zero-shot use; <c>{0}</c> marks the class name. Several are
    /// averaged (<see cref="PromptTemplates.ClassFeatures"/>). Default: <see cref="PromptTemplates.Default"/> alone.</summary>
    public IReadOnlyList<string> Templates { get; init; } = [PromptTemplates.Default];

    /// <summary>The placeholder word whose positions the learned context fills; it must be a single token.</summary>
    public string Placeholder { get; init; } = "X";

    /// <summary>Seed of the random context initialisation: the same seed gives the same context.</summary>
    public ulong Seed { get; init; }

    /// <summary>Checks every option; throws <see cref="ArgumentOutOfRangeException"/> or <see cref="ArgumentException"/> naming the first bad one.</summary>
    public void Validate()
    {
        if (ContextInit is null) OptionChecks.AtLeast(ContextLength, 1, nameof(ContextLength));
        if (ContextInit is not null && string.IsNullOrWhiteSpace(ContextInit))
            throw new ArgumentException($"{nameof(ContextInit)} must be null or a non-empty phrase, got \"{ContextInit}\".", nameof(ContextInit));
        OptionChecks.Positive(InitStd, nameof(InitStd));
        OptionChecks.Defined(ClassTokenPosition, nameof(ClassTokenPosition));
        PromptTemplates.Validate(Templates, nameof(Templates));
        if (string.IsNullOrWhiteSpace(Placeholder) || Placeholder.Contains(' ', StringComparison.Ordinal))
            throw new ArgumentException($"{nameof(Placeholder)} must be a single word, got \"{Placeholder}\".", nameof(Placeholder));
    }
}
