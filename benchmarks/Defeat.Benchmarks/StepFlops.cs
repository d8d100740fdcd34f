using Defeat.Clip;

namespace Defeat.Benchmarks;

/// <summary>
/// Matrix-multiply FLOPs (2 per multiply-add) of the work a step must do, counted from the model's shapes.
/// Only GEMM-like arithmetic counts (linear layers, attention products, convolutions, the quantizer's
/// distance product); layer norms, softmax, activations and other elementwise passes count zero, since the
/// floor they are compared with is a GEMM. Attention is counted dense (all L x L scores), also when causal.
/// </summary>
public static class StepFlops
{
    /// <summary>Forward of one transformer block stack over <paramref name="tokens"/> tokens of width <paramref name="width"/>:
    /// per layer <c>24 L W^2</c> (qkv 6, out 2, MLP 16) plus <c>4 L^2 W</c> (<c>QK^T</c> and <c>AV</c>).</summary>
    public static double TransformerForward(int tokens, int width, int layers)
        => layers * (24.0 * tokens * width * width + 4.0 * tokens * tokens * width);

    /// <summary>Input gradient of the stack (weights frozen): every linear layer once more (<c>dX = dY W</c>) and
    /// four attention products instead of two (<c>dV, dP, dQ, dK</c>).</summary>
    public static double TransformerInputBackward(int tokens, int width, int layers)
        => layers * (24.0 * tokens * width * width + 8.0 * tokens * tokens * width);

    /// <summary>Forward of the image tower for one image: patch convolution, the stack, <c>ln_post(all tokens) @ proj</c>.</summary>
    public static double VisionForward(ClipConfig c)
    {
        int n = c.GridSide * c.GridSide, l = n + 1;
        double conv = 2.0 * n * c.InputChannels * c.VisionPatchSize * c.VisionPatchSize * c.VisionWidth;
        return conv + TransformerForward(l, c.VisionWidth, c.VisionLayers) + 2.0 * l * c.VisionWidth * c.EmbedDim;
    }

    /// <summary>Input gradient of the image tower for one image (the transposed convolution costs what the convolution does).</summary>
    public static double VisionInputBackward(ClipConfig c)
    {
        int n = c.GridSide * c.GridSide, l = n + 1;
        double conv = 2.0 * n * c.InputChannels * c.VisionPatchSize * c.VisionPatchSize * c.VisionWidth;
        return conv + TransformerInputBackward(l, c.VisionWidth, c.VisionLayers) + 2.0 * l * c.VisionWidth * c.EmbedDim;
    }

    /// <summary>One PGD step on zero-shot CLIP logits for a batch: forward and input gradient of the image tower
    /// and of the cosine logits against <paramref name="classes"/> text features.</summary>
    public static double AttackStep(ClipConfig c, int batch, int classes)
        => batch * (VisionForward(c) + VisionInputBackward(c) + 2 * 2.0 * c.EmbedDim * classes);

    /// <summary>Forward of the text tower for <paramref name="prompts"/> prompts of <see cref="ClipConfig.ContextLength"/> tokens
    /// (only the end-of-text token is projected).</summary>
    public static double TextForward(ClipConfig c, int prompts)
        => prompts * (TransformerForward(c.ContextLength, c.TextWidth, c.TextLayers) + 2.0 * c.TextWidth * c.EmbedDim);

    /// <summary>Input gradient of the text tower (down to the prompt embeddings).</summary>
    public static double TextInputBackward(ClipConfig c, int prompts)
        => prompts * (TransformerInputBackward(c.ContextLength, c.TextWidth, c.TextLayers) + 2.0 * c.TextWidth * c.EmbedDim);

    /// <summary>Forward of PerturbShield for one image: the VQ-VAE's convolutions on the <c>h x w</c> grid
    /// (encoder 3x3 D-&gt;H, 3x3 H-&gt;H, residual 3x3 + 1x1; decoder 3x3, residual 3x3 + 1x1, transposed 3x3 H-&gt;D),
    /// the quantizer's <c>[N, H] x [H, K]</c> distance product and the projection W over the N positions.</summary>
    public static double ShieldForward(int positions, int featureDim, int hiddenDim, int codebookSize)
    {
        double conv3(int a, int b) => 2.0 * positions * 9 * a * b;
        double conv1(int a, int b) => 2.0 * positions * a * b;
        int d = featureDim, h = hiddenDim;
        double convs = conv3(d, h) + conv3(h, h) + conv3(h, h) + conv1(h, h)   // encoder
                     + conv3(h, h) + conv3(h, h) + conv1(h, h) + conv3(h, d);  // decoder
        return convs + 2.0 * positions * h * codebookSize + 2.0 * positions * d;
    }

    /// <summary>The shield's convolutions and projection once more: one gradient (input or weight) costs what the forward does.</summary>
    public static double ShieldOneGradient(int positions, int featureDim, int hiddenDim, int codebookSize)
        => ShieldForward(positions, featureDim, hiddenDim, codebookSize) - 2.0 * positions * hiddenDim * codebookSize;

    /// <summary>
    /// One DEFEAT training step of <paramref name="batch"/> images: PGD with <paramref name="attackSteps"/> steps on the
    /// fused logits (each: tower forward + input gradient, shield forward + input gradient), the text features the
    /// attack reuses (one text forward), then the loss pass (tower forward, text forward + input gradient for the
    /// prompt context, shield forward + weight and input gradients). The optimiser step is elementwise (zero).
    /// </summary>
    public static double TrainingStep(ClipConfig c, int batch, int classes, int attackSteps, int hiddenDim, int codebookSize)
    {
        int n = c.GridSide * c.GridSide;
        double shieldFwd = ShieldForward(n, c.EmbedDim, hiddenDim, codebookSize);
        double shieldGrad = ShieldOneGradient(n, c.EmbedDim, hiddenDim, codebookSize);
        double logits = 2 * 2.0 * c.EmbedDim * classes;
        double attack = attackSteps * batch * (VisionForward(c) + VisionInputBackward(c) + shieldFwd + shieldGrad + 2 * logits);
        double text = TextForward(c, classes);
        // Every weight gradient and every input gradient except the first convolution's (the grid needs none).
        double firstConvInput = 2.0 * n * 9 * c.EmbedDim * hiddenDim;
        double loss = batch * (VisionForward(c) + shieldFwd + 2 * shieldGrad - firstConvInput + 2 * logits) + text + TextInputBackward(c, classes);
        return attack + text + loss;
    }

    /// <summary>The side <c>n</c> of the square GEMM <c>[n, n] x [n, n]</c> whose <c>2 n^3</c> FLOPs are closest to <paramref name="flops"/>.</summary>
    public static int SquareSide(double flops) => (int)Math.Round(Math.Cbrt(flops / 2));
}
