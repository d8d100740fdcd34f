using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Benchmarks;

/// <summary>
/// <c>--ab</c>: interleaved A/B of the formulations the profile considers, at the shapes of the steps: the attention
/// core (from the packed qkv projection to the merged heads), the MLP with QuickGELU, and the patch embedding;
/// forward + input gradient, and forward alone under no_grad. Medians of interleaved repetitions on the profile's clock (see <see cref="StepProfile"/>), so that a busy
/// machine disturbs every variant alike. Orientation only.
/// </summary>
public static class VariantProbe
{
    private delegate Tensor Attention(Tensor qkv, long batch, long length, int heads, bool causal);

    /// <summary>Runs every section of the probe.</summary>
    public static void Run()
    {
        StepProfile.SetThreads();
        string only = Environment.GetEnvironmentVariable("DEFEAT_PROBE_ONLY") ?? "";
        if (only is "" or "mlp") RunMlp();
        if (only is "" or "patch") RunPatchEmbedding();
        if (only is "" or "attention") RunAttention();
    }

    private static void Report(string title, IReadOnlyList<string> names, Tensor input, Tensor outputGrad, IReadOnlyList<Func<Tensor, Tensor>> variants)
    {
        using (torch.no_grad())
        {
            var reference = variants[0](input);
            for (int i = 1; i < variants.Count; i++)
            {
                double diff = (variants[i](input) - reference).abs().max().item<float>();
                double scale = reference.abs().max().item<float>();
                if (diff > 1e-5 * Math.Max(1, scale)) throw new InvalidOperationException($"{names[i]} differs from {names[0]} by {diff}.");
            }
        }
        var actions = new List<Action>();
        foreach (var f in variants)
        {
            actions.Add(() =>
            {
                using var s = torch.NewDisposeScope();
                torch.autograd.grad(new[] { f(input) }, new[] { input }, new[] { outputGrad });
            });
            actions.Add(() =>
            {
                using var s = torch.NewDisposeScope();
                using var noGrad = torch.no_grad();
                f(input);
            });
        }
        var medians = StepProfile.InterleavedMedians(actions, rounds: 31);
        Console.WriteLine($"{title}: ms forward+input gradient / forward no_grad");
        for (int i = 0; i < variants.Count; i++)
            Console.WriteLine($"  {names[i],-64} {medians[2 * i],9:F3} {medians[2 * i + 1],9:F3}");
    }

    private static void RunMlp()
    {
        foreach (var (name, rows, width) in new (string, long, long)[] { ("shipped image tower, B=250", 250 * 50, 64), ("ViT-B/32 image tower, B=4", 4 * 50, 768) })
        {
            using var scope = torch.NewDisposeScope();
            var fcW = torch.randn(4 * width, width).Over(Math.Sqrt(width));
            var fcB = torch.randn(4 * width).Times(0.1);
            var projW = torch.randn(width, 4 * width).Over(Math.Sqrt(4 * width));
            var projB = torch.randn(width).Times(0.1);
            var x = torch.randn(rows, width).requires_grad_(true);
            Report($"MLP, {name} ([{rows}, {width}] -> {4 * width} -> {width})",
                ["literal: c_fc, h * sigmoid(1.702 h), c_proj (before)", "c_fc, silu(1.702 h) / 1.702, c_proj", "folded: addmm(1.702), silu, addmm(1/1.702)",
                 "half folded: addmm(1.702), silu, / 1.702, c_proj"],
                x, torch.randn(rows, width),
                [
                    t => { var h = nn.functional.linear(t, fcW, fcB); return nn.functional.linear(h * torch.sigmoid(h.Times(1.702)), projW, projB); },
                    t => nn.functional.linear(nn.functional.silu(nn.functional.linear(t, fcW, fcB).Times(1.702)).Over_(1.702), projW, projB),
                    t => torch.addmm(projB, nn.functional.silu(torch.addmm(fcB, t, fcW.t(), beta: 1.702f, alpha: 1.702f)), projW.t(), beta: 1, alpha: 1 / 1.702f),
                    t => nn.functional.linear(nn.functional.silu(torch.addmm(fcB, t, fcW.t(), beta: 1.702f, alpha: 1.702f)).Over_(1.702), projW, projB),
                ]);
        }
    }

    private static void RunPatchEmbedding()
    {
        foreach (var (name, batch, channels, side, patch, width) in new (string, long, long, int, int, long)[] { ("shipped, B=250", 250, 1, 28, 4, 64), ("ViT-B/32, B=4", 4, 3, 224, 32, 768) })
        {
            using var scope = torch.NewDisposeScope();
            int g = side / patch;
            var conv = nn.Conv2d(channels, width, patch, stride: patch, bias: false);
            var weight = conv.weight!;
            weight.requires_grad_(false);
            var x = torch.rand(batch, channels, side, side).requires_grad_(true);
            Report($"patch embedding, {name}", ["conv2d(stride = kernel) + flatten + transpose (before)", "patches @ W^T"],
                x, torch.randn(batch, g * g, width),
                [
                    t => conv.call(t).flatten(2).transpose(1, 2),
                    t => t.reshape(batch, channels, g, patch, g, patch).permute(0, 2, 4, 1, 3, 5).reshape(batch, g * g, channels * patch * patch).matmul(weight.reshape(width, -1).t()),
                ]);
        }
    }

    private static void RunAttention()
    {
        var variants = new (string Name, Attention F)[]
        {
            ("explicit (before): chunk, matmul, scale, mask, softmax, matmul", Explicit),
            ("explicit, one qkv copy, q pre-scaled, bmm", ExplicitPacked),
            ("SDPA on select() views of [B, L, 3, H, d]", Fused),
            ("SDPA on unbind() views of [B, L, 3, H, d]", FusedUnbind),
            ("SDPA on chunk() views of [B, L, 3W]", FusedChunk),
        };
        var shapes = new (string Name, long Batch, long Length, int Width, int Heads, bool Causal)[]
        {
            ("shipped image tower, B=250", 250, 50, 64, 2, false),
            ("shipped image tower, B=32", 32, 50, 64, 2, false),
            ("shipped text tower, 10 prompts", 10, 77, 64, 2, true),
            ("ViT-B/32 image tower, B=4", 4, 50, 768, 12, false),
            ("ViT-B/32 text tower, 10 prompts", 10, 77, 512, 8, true),
        };
        foreach (var shape in shapes)
        {
            using var scope = torch.NewDisposeScope();
            var qkv = torch.randn(shape.Batch, shape.Length, 3 * shape.Width).requires_grad_(true);
            var g = torch.randn(shape.Batch, shape.Length, shape.Width);
            // Same values from every variant (checked once, to 1e-5).
            using (torch.no_grad())
            {
                var reference = Explicit(qkv, shape.Batch, shape.Length, shape.Heads, shape.Causal);
                foreach (var (name, f) in variants)
                {
                    double diff = (f(qkv, shape.Batch, shape.Length, shape.Heads, shape.Causal) - reference).abs().max().item<float>();
                    if (diff > 1e-5) throw new InvalidOperationException($"{name} differs from the explicit formula by {diff}.");
                }
            }
            var actions = new List<Action>();
            foreach (var (_, f) in variants)
            {
                actions.Add(() =>
                {
                    using var s = torch.NewDisposeScope();
                    var y = f(qkv, shape.Batch, shape.Length, shape.Heads, shape.Causal);
                    torch.autograd.grad(new[] { y }, new[] { qkv }, new[] { g });
                });
                actions.Add(() =>
                {
                    using var s = torch.NewDisposeScope();
                    using var noGrad = torch.no_grad();
                    f(qkv, shape.Batch, shape.Length, shape.Heads, shape.Causal);
                });
            }
            var medians = StepProfile.InterleavedMedians(actions, rounds: 31);
            Console.WriteLine($"{shape.Name} ([{shape.Batch}, {shape.Length}, {shape.Width}], {shape.Heads} heads{(shape.Causal ? ", causal" : "")}): ms forward+input gradient / forward no_grad");
            for (int i = 0; i < variants.Length; i++)
                Console.WriteLine($"  {variants[i].Name,-64} {medians[2 * i],9:F3} {medians[2 * i + 1],9:F3}");
        }
    }

    private static Tensor Explicit(Tensor qkv, long batch, long length, int heads, bool causal)
    {
        long width = qkv.shape[2] / 3;
        long headDim = width / heads;
        var parts = qkv.chunk(3, dim: -1);
        Tensor Split(Tensor t) => t.reshape(batch, length, heads, headDim).transpose(1, 2);
        var scores = Split(parts[0]).matmul(Split(parts[1]).transpose(-2, -1)).Times(Math.Pow(headDim, -0.5));
        if (causal)
        {
            using var mask = ScalarOps.Full(new long[] { length, length }, float.NegativeInfinity, dtype: scores.dtype).triu(1);
            scores = scores.Plus(mask);
        }
        return scores.softmax(-1).matmul(Split(parts[2])).transpose(1, 2).reshape(batch, length, width);
    }

    private static Tensor ExplicitPacked(Tensor qkv, long batch, long length, int heads, bool causal)
    {
        long width = qkv.shape[2] / 3;
        long headDim = width / heads;
        // One copy to [3, B*H, L, d]; q scaled there (d < L: cheaper than scaling the scores).
        var packed = qkv.view(batch, length, 3, heads, headDim).permute(2, 0, 3, 1, 4).reshape(3, batch * heads, length, headDim);
        var q = packed[0].Times(Math.Pow(headDim, -0.5));
        var scores = torch.bmm(q, packed[1].transpose(1, 2));
        if (causal)
        {
            using var mask = torch.ones(length, length, dtype: ScalarType.Bool).triu(1);
            scores = scores.MaskedFill(mask, float.NegativeInfinity);
        }
        return torch.bmm(scores.softmax(-1), packed[2]).view(batch, heads, length, headDim).transpose(1, 2).reshape(batch, length, width);
    }

    private static Tensor FusedUnbind(Tensor qkv, long batch, long length, int heads, bool causal)
    {
        long width = qkv.shape[2] / 3;
        var parts = qkv.view(batch, length, 3, heads, width / heads).unbind(2);
        return nn.functional.scaled_dot_product_attention(parts[0].transpose(1, 2), parts[1].transpose(1, 2),
            parts[2].transpose(1, 2), null, 0.0, causal).transpose(1, 2).reshape(batch, length, width);
    }

    private static Tensor FusedChunk(Tensor qkv, long batch, long length, int heads, bool causal)
    {
        long width = qkv.shape[2] / 3;
        var parts = qkv.chunk(3, dim: -1);
        Tensor Split(Tensor t) => t.view(batch, length, heads, width / heads).transpose(1, 2);
        return nn.functional.scaled_dot_product_attention(Split(parts[0]), Split(parts[1]), Split(parts[2]), null, 0.0, causal)
            .transpose(1, 2).reshape(batch, length, width);
    }

    private static Tensor Fused(Tensor qkv, long batch, long length, int heads, bool causal)
    {
        long width = qkv.shape[2] / 3;
        long headDim = width / heads;
        var v5 = qkv.view(batch, length, 3, heads, headDim);
        return nn.functional.scaled_dot_product_attention(v5.select(2, 0).transpose(1, 2), v5.select(2, 1).transpose(1, 2),
            v5.select(2, 2).transpose(1, 2), null, 0.0, causal).transpose(1, 2).reshape(batch, length, width);
    }
}
