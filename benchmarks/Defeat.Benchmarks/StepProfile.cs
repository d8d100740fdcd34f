using Defeat.Model;
using System.Diagnostics;
using Defeat.Attacks;
using Defeat.Clip;
using Defeat.Data;
using Defeat.Shield;
using Defeat.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Benchmarks;

/// <summary>
/// <c>--profile MODEL BATCH</c> and <c>--profile-train</c>: where the time of one PGD step (and of one DEFEAT training
/// step) goes, op by op. Each segment runs alone on an input of its real shape (as in the step), forward with autograd
/// recording and then its backward (<c>autograd.grad</c> to its input with a random output gradient, graph retained);
/// the printed time is the median of many repetitions, times the segment's count per step. The clock is the calling
/// thread's CPU time with ONE libtorch thread (all work then runs on the calling thread), which other processes on a
/// shared machine disturb far less than wall time; set <c>DEFEAT_PROFILE_WALL=1</c> for wall time with one thread per core.
/// A profile for orientation; speed claims come from the BenchmarkDotNet classes.
/// </summary>
public static class StepProfile
{
    private static readonly bool Wall = Environment.GetEnvironmentVariable("DEFEAT_PROFILE_WALL") == "1";

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec time);

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    // CLOCK_THREAD_CPUTIME_ID = 3 on Linux.
    private static double NowMs()
    {
        if (Wall) return Stopwatch.GetTimestamp() * 1000.0 / Stopwatch.Frequency;
        ClockGetTime(3, out var t);
        return t.Seconds * 1000.0 + t.Nanoseconds / 1e6;
    }

    /// <summary>Sets the thread count of the profile's clock (one thread for CPU time, one per core for wall time) and prints it.</summary>
    public static void SetThreads()
    {
        if (Wall) TorchThreads.PinToCoreCount();
        else torch.set_num_threads(1);
        Console.WriteLine($"// clock: {(Wall ? "wall time" : "calling thread's CPU time")}, torch threads = {torch.get_num_threads()}");
    }

    private sealed record Segment(string Name, int Count, long[] InputShape, Func<Tensor, Tensor> Forward, bool Backward = true);

    /// <summary>Profiles one PGD step of zero-shot CLIP on <paramref name="modelName"/> at batch <paramref name="batch"/>.</summary>
    public static void RunAttack(string modelName, int batch)
    {
        SetThreads();
        using var model = BenchmarkModels.Create(modelName);
        var c = model.Config;
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        Func<Tensor, Tensor> Module(string name) => ((nn.Module<Tensor, Tensor>)modules[name]).call;
        int l = c.GridSide * c.GridSide + 1, w = c.VisionWidth, heads = c.ResolvedVisionHeads, hd = w / heads;
        const string block = "visual.transformer.resblocks.0.";
        var wqkv = parameters[block + "attn.in_proj_weight"];
        var bqkv = parameters[block + "attn.in_proj_bias"];
        using var text = nn.functional.normalize(torch.randn(10, c.EmbedDim), dim: -1);
        using var labels = torch.randint(0, 10, new long[] { batch });
        long[] tokens = [batch, l, w], heads4 = [batch, heads, l, hd], scores = [batch, heads, l, l];
        int n = c.VisionLayers;
        var fcW = parameters[block + "mlp.c_fc.weight"];
        var fcB = parameters[block + "mlp.c_fc.bias"];
        var projW = parameters[block + "mlp.c_proj.weight"];
        var projB = parameters[block + "mlp.c_proj.bias"];
        var convW = parameters["visual.conv1.weight"];
        int g = c.GridSide, p = c.VisionPatchSize;
        long[] image = [batch, c.InputChannels, c.ImageResolution, c.ImageResolution];
        // Rows with a count make up the step; rows with "-" break a row down or try an alternative.
        var segments = new List<Segment>
        {
            new("normalize (x - mean) / std", 1, image, Module("normalize")),
            new("patch embedding: conv1 + flatten + transpose", 0, image, x => Module("visual.conv1")(x).flatten(2).transpose(1, 2)),
            new("patch embedding: patches @ W (as VisionTransformer)", 1, image, x =>
                x.reshape(batch, c.InputChannels, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(batch, g * g, c.InputChannels * p * p)
                 .matmul(convW.reshape(w, -1).t())),
            new("cat class token, + pos", 1, [batch, l - 1, w], x =>
                torch.cat([parameters["visual.class_embedding"].expand(batch, 1, -1), x], 1).Plus(parameters["visual.positional_embedding"])),
            new("ln_pre", 1, tokens, Module("visual.ln_pre")),
            new("residual block (whole module)", n, tokens, Module(block.TrimEnd('.'))),
            new("  ln_1 / ln_2 (each)", 0, tokens, Module(block + "ln_1")),
            new("  attn (whole module)", 0, tokens, Module(block + "attn")),
            new("    qkv linear", 0, tokens, x => nn.functional.linear(x, wqkv, bqkv)),
            new("    SDPA on strided q, k, v + merge", 0, [batch, l, 3 * w], x =>
            {
                var v5 = x.view(batch, l, 3, heads, hd);
                return nn.functional.scaled_dot_product_attention(v5.select(2, 0).transpose(1, 2), v5.select(2, 1).transpose(1, 2), v5.select(2, 2).transpose(1, 2))
                    .transpose(1, 2).reshape(batch, l, w);
            }),
            new("    explicit: chunk, split heads, q k^T", 0, [batch, l, 3 * w], x =>
            {
                var parts = x.chunk(3, -1);
                return parts[0].reshape(batch, l, heads, hd).transpose(1, 2).matmul(parts[1].reshape(batch, l, heads, hd).transpose(1, 2).transpose(-2, -1));
            }),
            new("    explicit: * 1/sqrt(d)", 0, scores, x => x.Times(Math.Pow(hd, -0.5))),
            new("    explicit: softmax", 0, scores, x => x.softmax(-1)),
            new("    explicit: probs @ v", 0, scores, x => x.matmul(x[.., .., .., ..hd])),
            new("    explicit: merge heads (transpose + reshape)", 0, heads4, x => x.transpose(1, 2).reshape(batch, l, w)),
            new("    out_proj", 0, tokens, Module(block + "attn.out_proj")),
            new("  residual add", 0, tokens, x => x.Plus(x)),
            new("  mlp, folded (addmm 1.702, silu, addmm 1/1.702)", 0, tokens, x =>
                torch.addmm(projB, nn.functional.silu(torch.addmm(fcB, x.reshape(-1, w), fcW.t(), beta: 1.702f, alpha: 1.702f)), projW.t(), beta: 1, alpha: 1 / 1.702f)),
            new("  mlp, literal (c_fc, x * sigmoid(1.702 x), c_proj)", 0, tokens, x =>
            {
                var h = nn.functional.linear(x, fcW, fcB);
                return nn.functional.linear(h * torch.sigmoid(h.Times(1.702)), projW, projB);
            }),
            new("    c_fc", 0, tokens, Module(block + "mlp.c_fc")),
            new("    x * sigmoid(1.702 x)", 0, [batch, l, 4 * w], x => x * torch.sigmoid(x.Times(1.702))),
            new("    silu(x)", 0, [batch, l, 4 * w], x => nn.functional.silu(x)),
            new("    c_proj", 0, [batch, l, 4 * w], Module(block + "mlp.c_proj")),
            new("ln_post + @ proj (all tokens)", 1, tokens, x => Module("visual.ln_post")(x).matmul(parameters["visual.proj"])),
            new("class/grid split (contiguous copies)", 1, [batch, l, c.EmbedDim], x => x[.., 0].contiguous().Plus(x[.., 1..].contiguous().sum(1))),
            new("head: normalise, cosine logits, CE sum", 1, [batch, c.EmbedDim], x =>
                nn.functional.cross_entropy(nn.functional.normalize(x, dim: -1).matmul(text.t()).Times(100), labels, reduction: nn.Reduction.Sum)),
        };
        Console.WriteLine($"PGD step profile: {modelName}, batch {batch}, {c.VisionLayers} layers of width {w}, {heads} heads, {l} tokens; torch threads {torch.get_num_threads()}");
        double total = Print(segments);

        // The whole step for comparison (the AttackStepBenchmarks body), and forward-only variants.
        using var images = BenchmarkModels.Images(model, batch);
        using var classText = text.alias();
        double step = Median(() =>
        {
            using var scope = torch.NewDisposeScope();
            var input = images.detach().requires_grad_(true);
            var loss = nn.functional.cross_entropy(model.ZeroShotLogits(input, classText), labels, reduction: nn.Reduction.Sum);
            torch.autograd.grad(new[] { loss }, new[] { input });
        });
        double forwardGrad = Median(() =>
        {
            using var scope = torch.NewDisposeScope();
            model.ZeroShotLogits(images.detach().requires_grad_(true), classText);
        });
        double forwardNoGrad = Median(() =>
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            model.ZeroShotLogits(images, classText);
        });
        double forwardInference = Median(() =>
        {
            using var scope = torch.NewDisposeScope();
            using var inference = torch.inference_mode();
            model.ZeroShotLogits(images, classText);
        });
        long faults = MinorFaults();
        for (int i = 0; i < 5; i++)
        {
            using var scope = torch.NewDisposeScope();
            var input = images.detach().requires_grad_(true);
            var loss = nn.functional.cross_entropy(model.ZeroShotLogits(input, classText), labels, reduction: nn.Reduction.Sum);
            torch.autograd.grad(new[] { loss }, new[] { input });
        }
        Console.WriteLine($"minor page faults per step: {(MinorFaults() - faults) / 5}");
        Console.WriteLine($"sum of segments {total:F2} ms; whole step (forward + input gradient) {step:F2} ms; " +
                          $"forward alone: recording {forwardGrad:F2} ms, no_grad {forwardNoGrad:F2} ms, inference_mode {forwardInference:F2} ms");
    }

    /// <summary>Profiles one DEFEAT training step (shipped backbone, batch 32, PGD-3) phase by phase.</summary>
    public static void RunTraining()
    {
        SetThreads();
        using var backbone = BenchmarkModels.Create(BenchmarkModels.Shipped);
        torch.manual_seed(1);
        using var model = DefeatModel.Create(backbone, FashionMnist.ClassNames,
            shieldOptions: new PerturbShieldOptions { HiddenDim = backbone.FeatureDim / 2, CodebookSize = 512 });
        using var optimizer = new MomentumSgd(model.TrainableParameters(), 0.002, 0.9, 5e-4);
        using var images = BenchmarkModels.Images(backbone, 32);
        using var labels = torch.randint(0, 10, new long[] { 32 }, generator: new Generator(5));
        ITrainableClassifier trainable = model;
        ulong seed = 0;
        model.eval();
        using var text = TextNoGrad(model);
        using var grids = torch.randn(32, 49, backbone.FeatureDim);
        var phases = new (string Name, int Count, Action Run)[]
        {
            ("attack: text features (no_grad)", 1, () => { using var s = torch.NewDisposeScope(); TextNoGrad(model); }),
            ("attack step: fused logits forward + input gradient", 3, () =>
            {
                using var s = torch.NewDisposeScope();
                var input = images.detach().requires_grad_(true);
                var loss = nn.functional.cross_entropy(model.Logits(input, Branch.Fused, text), labels, reduction: nn.Reduction.Sum);
                torch.autograd.grad(new[] { loss }, new[] { input });
            }),
            ("  of which: image encoder forward + input gradient", 0, () =>
            {
                using var s = torch.NewDisposeScope();
                var input = images.detach().requires_grad_(true);
                using var f = backbone.EncodeImage(input);
                torch.autograd.grad(new[] { f.ClassFeature.sum().Plus(f.GridFeatures.sum()) }, new[] { input });
            }),
            ("  of which: shield forward + input gradient (grid)", 0, () =>
            {
                using var s = torch.NewDisposeScope();
                var grid = grids.detach().requires_grad_(true);
                using var o = model.Shield!.Shield(grid);
                torch.autograd.grad(new[] { o.Projected.sum() }, new[] { grid });
            }),
            ("attack: fused logits forward (no_grad)", 1, () => { using var s = torch.NewDisposeScope(); using var g = torch.no_grad(); model.Logits(images, Branch.Fused, text); }),
            ("PGD-3 (PgdAttack.Perturb, all of it)", 0, () =>
            {
                using var s = torch.NewDisposeScope();
                new PgdAttack(PgdOptions.DefeatTraining(4.0 / 255) with { Seed = ++seed }).Perturb(trainable.AttackTarget(), images, labels);
            }),
            ("loss: forward (training mode)", 0, () => { using var s = torch.NewDisposeScope(); model.train(); trainable.Loss(images, labels); model.eval(); }),
            ("loss: text features with grad (part of the forward)", 0, () => { using var s = torch.NewDisposeScope(); model.TextFeatures(); }),
            ("loss: forward + backward", 1, () =>
            {
                using var s = torch.NewDisposeScope();
                model.train();
                var loss = trainable.Loss(images, labels);
                optimizer.ZeroGrad();
                loss.Total.backward();
                model.eval();
            }),
            ("optimizer step", 1, () => optimizer.Step()),
        };
        Console.WriteLine($"DEFEAT training step profile: shipped backbone, batch 32, PGD-3; torch threads {torch.get_num_threads()}");
        double sum = 0;
        foreach (var (name, count, run) in phases)
        {
            double ms = Median(run);
            sum += count * ms;
            Console.WriteLine($"  {name,-52} x{count}  {ms,9:F2} ms  {count * ms,9:F2} ms");
        }
        double whole = Median(() =>
        {
            using var s = torch.NewDisposeScope();
            model.eval();
            var adv = new PgdAttack(PgdOptions.DefeatTraining(4.0 / 255) with { Seed = ++seed }).Perturb(trainable.AttackTarget(), images, labels);
            model.train();
            var loss = trainable.Loss(adv, labels);
            optimizer.ZeroGrad();
            loss.Total.backward();
            optimizer.Step();
            model.eval();
        });
        Console.WriteLine($"whole training step {whole:F2} ms (sum of the counted phases: {sum:F2} ms)");
    }

    /// <summary>GEMM rates (GFLOP/s) of the square floor and of the shapes inside the steps, on the profile's clock.</summary>
    public static void RunGemm()
    {
        SetThreads();
        using var noGrad = torch.no_grad();
        var shapes = new (long M, long K, long N, string Note)[]
        {
            (1634, 1634, 1634, "square floor of the shipped step at B=250"),
            (1024, 1024, 1024, "square"),
            (12500, 64, 192, "qkv, shipped B=250"),
            (12500, 64, 256, "c_fc, shipped B=250"),
            (12500, 256, 64, "c_proj, shipped B=250"),
            (12500, 64, 64, "out_proj, shipped B=250"),
            (200, 768, 2304, "qkv, ViT-B/32 B=4"),
            (200, 768, 3072, "c_fc, ViT-B/32 B=4"),
            (800, 768, 3072, "c_fc, ViT-B/32 B=16"),
            (1568, 256, 512, "quantizer distances"),
        };
        foreach (var (m, k, n, note) in shapes)
        {
            using var scope = torch.NewDisposeScope();
            var a = torch.randn(m, k);
            var b = torch.randn(k, n);
            var c = torch.empty(m, n);
            double ms = Median(() => c.addmm_(a, b, beta: 0, alpha: 1));
            double fresh = Median(() => { using var s = torch.NewDisposeScope(); torch.mm(a, b); });
            Console.WriteLine($"  [{m} x {k}] x [{k} x {n}] ({note}): {ms:F3} ms = {2.0 * m * k * n / ms / 1e6:F1} GFLOP/s into a buffer; " +
                              $"fresh output {fresh:F3} ms = {2.0 * m * k * n / fresh / 1e6:F1} GFLOP/s");
        }
        foreach (var (batch, rows, inner, cols, note) in new (long, long, long, long, string)[] { (500, 50, 32, 50, "q k^T, shipped B=250"), (500, 50, 50, 32, "probs v, shipped B=250"), (48, 50, 64, 50, "q k^T, ViT-B/32 B=4") })
        {
            using var scope = torch.NewDisposeScope();
            var a = torch.randn(batch, rows, inner);
            var b = torch.randn(batch, inner, cols);
            double ms = Median(() => { using var s = torch.NewDisposeScope(); torch.bmm(a, b); });
            Console.WriteLine($"  bmm {batch} x [{rows} x {inner}] x [{inner} x {cols}] ({note}): {ms:F3} ms = {2.0 * batch * rows * inner * cols / ms / 1e6:F1} GFLOP/s");
        }
    }

    /// <summary>Runs the actions in turn for <paramref name="rounds"/> rounds (after one warm-up each); the median time of each, in ms.</summary>
    public static double[] InterleavedMedians(IReadOnlyList<Action> actions, int rounds)
    {
        foreach (var a in actions) a();
        var times = actions.Select(_ => new double[rounds]).ToArray();
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < actions.Count; i++)
            {
                double start = NowMs();
                actions[i]();
                times[i][r] = NowMs() - start;
            }
        return times.Select(t => { Array.Sort(t); return t[rounds / 2]; }).ToArray();
    }

    // Field 10 of /proc/self/stat: minor page faults of the process so far.
    private static long MinorFaults()
    {
        var stat = File.ReadAllText("/proc/self/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[7], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static Tensor TextNoGrad(DefeatModel model)
    {
        using var noGrad = torch.no_grad();
        return model.TextFeatures();
    }

    private static double Print(List<Segment> segments)
    {
        double total = 0;
        Console.WriteLine($"  {"segment",-48} {"count",5} {"fwd ms",9} {"bwd ms",9} {"per step",9}");
        var rows = new List<(string, int, double, double)>();
        foreach (var s in segments)
        {
            using var scope = torch.NewDisposeScope();
            var x = torch.randn(s.InputShape).requires_grad_(true);
            double fwd = Median(() => { using var inner = torch.NewDisposeScope(); s.Forward(x); });
            double bwd = 0;
            if (s.Backward)
            {
                var y = s.Forward(x);
                var g = torch.randn_like(y);
                bwd = Median(() => { using var inner = torch.NewDisposeScope(); torch.autograd.grad(new[] { y }, new[] { x }, new[] { g }, retain_graph: true); });
            }
            rows.Add((s.Name, s.Count, fwd, bwd));
            total += s.Count * (fwd + bwd);
        }
        foreach (var (name, count, fwd, bwd) in rows)
        {
            double per = count * (fwd + bwd);
            string share = count > 0 ? $"{100 * per / total,5:F1} %" : "";
            Console.WriteLine($"  {name,-48} {(count > 0 ? count.ToString() : "-"),5} {fwd,9:F3} {bwd,9:F3} {(count > 0 ? per.ToString("F2") : ""),9} {share}");
        }
        return total;
    }

    // Median time in ms over enough repetitions to fill about 0.4 s (at least 5, at most 400), after one warm-up.
    private static double Median(Action action)
    {
        action();
        double start = NowMs();
        action();
        double first = NowMs() - start;
        int reps = (int)Math.Clamp(400 / Math.Max(first, 1e-3), 5, 400);
        var times = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            start = NowMs();
            action();
            times[i] = NowMs() - start;
        }
        Array.Sort(times);
        return times[reps / 2];
    }
}
