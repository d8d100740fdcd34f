using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Defeat.Clip.Modeling;

/// <summary>A stack of <see cref="ResidualAttentionBlock"/>s (state-dict keys <c>resblocks.{i}.*</c>). Batch-first.</summary>
public sealed class ClipTransformer : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch names: they are the state-dict keys.
    private readonly Sequential resblocks;
#pragma warning restore IDE1006

    /// <summary>Model width.</summary>
    public int Width { get; }

    /// <summary>Number of blocks.</summary>
    public int Layers { get; }

    /// <summary>Creates the stack.</summary>
    /// <param name="width">Model width.</param>
    /// <param name="layers">Number of blocks.</param>
    /// <param name="heads">Attention heads per block.</param>
    /// <param name="causal">Whether attention is causal.</param>
    public ClipTransformer(int width, int layers, int heads, bool causal) : base(nameof(ClipTransformer))
    {
        Width = width;
        Layers = layers;
        resblocks = nn.Sequential(Enumerable.Range(0, layers)
            .Select(_ => (nn.Module<Tensor, Tensor>)new ResidualAttentionBlock(width, heads, causal)).ToArray());
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x) => resblocks.forward(x);
}
