using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Defeat.Shield;

/// <summary>
/// The semantic alignment projection <c>W</c>: a learned weighted sum (with bias) over the N grid
/// positions, <c>[B, N, D] -&gt; [B, D]</c>. Field <c>linear</c> = <c>Linear(N, 1)</c> as the official
/// <c>LinearProjection</c>.
/// </summary>
public sealed class SemanticAlignmentProjection : Module<Tensor, Tensor>
{
    private readonly Linear linear;

    /// <summary>Creates the projection over <paramref name="gridPositions"/> positions.</summary>
    /// <param name="gridPositions">N.</param>
    public SemanticAlignmentProjection(int gridPositions) : base(nameof(SemanticAlignmentProjection))
    {
        linear = Linear(gridPositions, 1);
        RegisterComponents();
    }

    /// <summary>Projects <c>[B, N, D]</c> to <c>[B, D]</c>.</summary>
    /// <param name="grid">Reconstructed grid features.</param>
    public override Tensor forward(Tensor grid) => linear.call(grid.transpose(1, 2)).squeeze(-1);
}
