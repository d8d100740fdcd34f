namespace Defeat.Benchmarks;

/// <summary>One benchmark shape: M input vectors of width D against K codewords.</summary>
/// <param name="M">Number of input vectors (rows).</param>
/// <param name="D">Vector width.</param>
/// <param name="K">Codebook size.</param>
public sealed record QuantizerShape(int M, int D, int K)
{
    /// <summary>The shapes of the issue: ViT-B/32 grids of 32 and 100 images, and a large codebook.</summary>
    public static IReadOnlyList<QuantizerShape> All { get; } =
    [
        new(1568, 256, 512),
        new(4900, 256, 512),
        new(16384, 256, 8192),
    ];

    /// <summary>Compact label for the results table.</summary>
    public override string ToString() => $"M={M} D={D} K={K}";
}
