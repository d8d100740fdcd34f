using Defeat.Backbones;
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
    private readonly nn.Module<Tensor, Tensor>[] _blocks;

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
        _blocks = Enumerable.Range(0, layers)
            .Select(_ => (nn.Module<Tensor, Tensor>)new ResidualAttentionBlock(width, heads, causal)).ToArray();
        resblocks = nn.Sequential(_blocks);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x) => resblocks.forward(x);

    /// <summary>
    /// Runs the blocks with deep prompts: before block <c>i &gt;= 1</c>, the tokens <paramref name="prompts"/> gives for
    /// layer <c>i</c> overwrite positions <c>promptStart .. promptStart + P - 1</c> (the previous block's prompt outputs).
    /// </summary>
    /// <param name="x">Tokens <c>[B, L, Width]</c>, layer 0's prompts already in place.</param>
    /// <param name="prompts">The provider.</param>
    /// <param name="tower">Which tower is asking.</param>
    /// <param name="promptStart">First prompt position.</param>
    /// <param name="promptCount">Prompt tokens already at <paramref name="promptStart"/>; 0 when none are yet. A vision
    /// tower never adds prompts after layer 0; a text tower's first answer fixes the count.</param>
    internal Tensor forward(Tensor x, IDeepPromptProvider prompts, PromptTower tower, int promptStart, int promptCount)
    {
        for (int i = 0; i < _blocks.Length; i++)
        {
            if (i > 0 && prompts.PromptTokens(tower, i) is { } tokens)
            {
                if (promptCount == 0 && tower == PromptTower.Vision)
                    throw new InvalidOperationException(
                        $"The prompt provider gave vision prompts for layer {i} but none for layer 0; vision prompts are appended at layer 0 and only replaced later.");
                x = DeepPromptTokens.Replace(x, tokens, promptStart, promptCount, tower, i);
                promptCount = (int)tokens.shape[^2];
            }
            x = _blocks[i].forward(x);
        }
        return x;
    }
}
