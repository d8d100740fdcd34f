using Defeat.Backbones;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Defeat.Clip.Modeling;

/// <summary>
/// CLIP's ViT image tower (state-dict prefix <c>visual.</c>): patch convolution without bias, class
/// embedding, positional embedding, <c>ln_pre</c>, transformer, <c>ln_post</c> and projection <c>proj</c>.
/// </summary>
/// <remarks>
/// Expects already normalised images; <see cref="ClipModel"/> normalises pixels before calling it.
/// Its forward returns every token projected into the joint space, <c>[B, 1 + N, D]</c>: token 0 is the
/// class feature and tokens 1..N the grid features in row-major order. <c>ln_post</c> acts per token, so
/// applying it to all tokens gives the reference class feature exactly.
/// </remarks>
public sealed class VisionTransformer : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch names: they are the state-dict keys.
    private readonly Conv2d conv1;
    private readonly Parameter class_embedding;
    private readonly Parameter positional_embedding;
    private readonly LayerNorm ln_pre;
    private readonly ClipTransformer transformer;
    private readonly LayerNorm ln_post;
    private readonly Parameter proj;
#pragma warning restore IDE1006

    /// <summary>Side of the input image in pixels.</summary>
    public int InputResolution { get; }

    /// <summary>Side of a patch in pixels.</summary>
    public int PatchSize { get; }

    /// <summary>Patches per side of the grid.</summary>
    public int GridSide => InputResolution / PatchSize;

    /// <summary>Width of the transformer's tokens (the width of vision prompts).</summary>
    public int Width => transformer.Width;

    /// <summary>Number of transformer blocks.</summary>
    public int Layers => transformer.Layers;

    /// <summary>Width of the output features.</summary>
    public int OutputDim { get; }

    /// <summary>Number of input channels.</summary>
    public int InputChannels { get; }

    /// <summary>Creates the tower with zero weights (load a checkpoint or call <see cref="ClipModel.InitializeParameters"/>).</summary>
    /// <param name="inputResolution">Image side in pixels.</param>
    /// <param name="patchSize">Patch side in pixels.</param>
    /// <param name="width">Transformer width.</param>
    /// <param name="layers">Transformer blocks.</param>
    /// <param name="heads">Attention heads.</param>
    /// <param name="outputDim">Width of the joint feature space.</param>
    /// <param name="inputChannels">Image channels.</param>
    public VisionTransformer(int inputResolution, int patchSize, int width, int layers, int heads, int outputDim, int inputChannels = 3)
        : base(nameof(VisionTransformer))
    {
        InputResolution = inputResolution;
        PatchSize = patchSize;
        OutputDim = outputDim;
        InputChannels = inputChannels;
        conv1 = nn.Conv2d(inputChannels, width, kernel_size: patchSize, stride: patchSize, bias: false);
        int grid = inputResolution / patchSize;
        class_embedding = new Parameter(torch.zeros(width));
        positional_embedding = new Parameter(torch.zeros(grid * grid + 1, width));
        ln_pre = nn.LayerNorm(width);
        transformer = new ClipTransformer(width, layers, heads, causal: false);
        ln_post = nn.LayerNorm(width);
        proj = new Parameter(torch.zeros(width, outputDim));
        RegisterComponents();
    }

    /// <summary>Encodes normalised images <c>[B, C, H, W]</c> into projected tokens <c>[B, 1 + N, D]</c>.</summary>
    public override Tensor forward(Tensor x)
    {
        var patches = EmbedPatches(x);                        // [B, N, width], row-major grid
        long batch = patches.shape[0];
        var cls = class_embedding.to(patches.dtype).expand(batch, 1, -1);
        var tokens = torch.cat([cls, patches], dim: 1).Plus(positional_embedding.to(patches.dtype));
        tokens = transformer.forward(ln_pre.forward(tokens));
        return ln_post.forward(tokens).matmul(proj);
    }

    /// <summary>
    /// Encodes normalised images with deep prompts (MaPLe's layout): layer 0's vision prompts are appended after the
    /// patch tokens (after the positional embedding, before <c>ln_pre</c>), and each later layer's replace them
    /// (see <see cref="IDeepPromptProvider"/>). Returns the projected class and patch tokens <c>[B, 1 + N, D]</c>;
    /// the prompt tokens' outputs are dropped. With a null provider this is <see cref="forward(Tensor)"/>.
    /// </summary>
    /// <param name="x">Normalised images <c>[B, C, H, W]</c>.</param>
    /// <param name="prompts">The per-layer prompts, or null.</param>
    public Tensor forward(Tensor x, IDeepPromptProvider? prompts)
    {
        if (prompts is null) return forward(x);
        var patches = EmbedPatches(x);
        long batch = patches.shape[0];
        var cls = class_embedding.to(patches.dtype).expand(batch, 1, -1);
        var tokens = torch.cat([cls, patches], dim: 1).Plus(positional_embedding.to(patches.dtype));
        int visible = (int)tokens.shape[1];
        int count = 0;
        if (prompts.PromptTokens(PromptTower.Vision, 0) is { } first)
        {
            var appended = DeepPromptTokens.Expand(first, tokens, PromptTower.Vision, 0);
            count = (int)appended.shape[1];
            tokens = torch.cat([tokens, appended], dim: 1);
        }
        tokens = transformer.forward(ln_pre.forward(tokens), prompts, PromptTower.Vision, visible, count);
        return ln_post.forward(tokens[.., ..visible]).matmul(proj);
    }

    // conv1 has stride = kernel and no padding: on an image of exactly g x g patches it is one matmul of the
    // patches [B, N, C p p] with the weight [width, C p p]. Same values as the convolution (up to summation order),
    // and its input gradient is then a GEMM too, where the convolution's was about 20x its own forward on CPU.
    private Tensor EmbedPatches(Tensor x)
    {
        int g = GridSide, p = PatchSize;
        if (x.dim() != 4 || x.shape[2] != (long)g * p || x.shape[3] != (long)g * p)
            return conv1.forward(x).flatten(2).transpose(1, 2);
        long batch = x.shape[0], channels = x.shape[1];
        var weight = conv1.weight!;
        // [B, C, gy, p, gx, p] -> [B, gy, gx, C, p, p]: one row per patch, in the weight's (C, kh, kw) order.
        var columns = x.reshape(batch, channels, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(batch, (long)g * g, channels * p * p);
        return columns.matmul(weight.reshape(weight.shape[0], -1).t());
    }
}
