namespace Defeat.Prompting;

/// <summary>Options of <see cref="FapPromptLearner"/>; the defaults are FAP's official configuration (ViT-B/32, 2 context tokens, depth 9).</summary>
public sealed record FapPromptLearnerOptions
{
    /// <summary>Number <c>P</c> of learned context tokens per layer and tower (2 in FAP and MaPLe).</summary>
    public int ContextLength { get; init; } = 2;

    /// <summary>The hand-written prompt: its first <see cref="ContextLength"/> tokens start the learned context and the rest stay
    /// fixed words before the class name (as in MaPLe and FAP). Null: <see cref="ContextLength"/> placeholders with a random context.</summary>
    public string? ContextInit { get; init; } = "a photo of a";

    /// <summary>Prompt depth: the blocks <c>0 .. Depth - 1</c> of each tower get prompts (9 in FAP); 1 prompts the input only.</summary>
    public int Depth { get; init; } = 9;

    /// <summary>Whether the image encoder gets prompts; false leaves it untouched and learns the deeper text prompts directly.</summary>
    public bool VisionPrompts { get; init; } = true;

    /// <summary>The side whose deeper prompts are learned (the other is projected from them); FAP learns the vision side.</summary>
    public CompoundPromptSide LearnedSide { get; init; } = CompoundPromptSide.Vision;

    /// <summary>Standard deviation of the random initialisation of the compound prompts (and of a random context): 0.02.</summary>
    public double InitStd { get; init; } = 0.02;

    /// <summary>The placeholder word whose positions a random context fills; it must be a single token.</summary>
    public string Placeholder { get; init; } = "X";

    /// <summary>Seed of every random initialisation (compound prompts, projections, a random context).</summary>
    public ulong Seed { get; init; }

    /// <summary>Checks every option; throws <see cref="ArgumentOutOfRangeException"/> or <see cref="ArgumentException"/> naming the first bad one.</summary>
    public void Validate()
    {
        if (ContextLength < 1)
            throw new ArgumentOutOfRangeException(nameof(ContextLength), ContextLength, $"{nameof(ContextLength)} must be >= 1, got {ContextLength}.");
        if (ContextInit is not null && string.IsNullOrWhiteSpace(ContextInit))
            throw new ArgumentException($"{nameof(ContextInit)} must be null or a non-empty phrase, got \"{ContextInit}\".", nameof(ContextInit));
        if (Depth < 1)
            throw new ArgumentOutOfRangeException(nameof(Depth), Depth, $"{nameof(Depth)} must be >= 1 (1 prompts the input layer only), got {Depth}.");
        if (!Enum.IsDefined(LearnedSide))
            throw new ArgumentOutOfRangeException(nameof(LearnedSide), LearnedSide, $"{nameof(LearnedSide)} must be Vision or Text, got {LearnedSide}.");
        if (!VisionPrompts && LearnedSide == CompoundPromptSide.Vision && Depth > 1)
            throw new ArgumentException($"{nameof(LearnedSide)} Vision needs {nameof(VisionPrompts)}; without vision prompts set {nameof(LearnedSide)} = Text (or {nameof(Depth)} = 1).", nameof(LearnedSide));
        if (!(InitStd > 0) || double.IsInfinity(InitStd))
            throw new ArgumentOutOfRangeException(nameof(InitStd), InitStd, $"{nameof(InitStd)} must be a finite number > 0, got {InitStd}.");
        if (string.IsNullOrWhiteSpace(Placeholder) || Placeholder.Contains(' ', StringComparison.Ordinal))
            throw new ArgumentException($"{nameof(Placeholder)} must be a single word, got \"{Placeholder}\".", nameof(Placeholder));
    }
}
