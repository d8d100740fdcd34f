using Defeat.Clip;
using Defeat.Clip.Loading;
using Defeat.Clip.Preprocessing;
using Defeat.Clip.Tokenization;
using Defeat.Data;
using Defeat.Samples.Clip;
using Defeat.Samples.Shared;

namespace Defeat.Tests.Samples;

/// <summary>The CLIP sample end to end on a tiny random CLIP in each checkpoint format, an image folder and a CoOp split.</summary>
public class ClipSampleTests
{
    private static readonly string[] Methods = ["zero-shot", "APT-style", "FAP", "DEFEAT (official)", "DEFEAT (anti-collapse)"];
    private string _dir = "";

    [SetUp]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("defeat-clip-sample-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    private sealed class Recorder : IProgress<StageProgress>
    {
        public List<StageProgress> Reports { get; } = [];
        public void Report(StageProgress value) => Reports.Add(value);
    }

    /// <summary>Zero-shot accuracy computed directly with CLIP (no DEFEAT model, no evaluator): the expectation for the sample's zero-shot row.</summary>
    private static double DirectZeroShotAccuracy(string clipPath, string? tecoa, IReadOnlyList<string> files, IReadOnlyList<long> labels, IReadOnlyList<string> classes)
    {
        var tokenizer = new ClipTokenizer(System.IO.File.ReadAllText(ClipSampleFixture.File("tiny_merges.txt")).Split('\n'), mergeCount: 64);
        using var clip = ClipLoader.Load(clipPath, new ClipLoadOptions { VisionHeads = 2, TextHeads = 2, Tokenizer = tokenizer,
            AllowTorchScript = ClipLoader.DetectFormat(clipPath) == CheckpointFormat.TorchScript });
        if (tecoa is not null) ClipLoader.LoadImageTower(clip, tecoa);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var images = ClipPreprocessor.For(clip).LoadImages(files);
        var text = clip.ClassTextFeatures(classes, ["a photo of a {0}."]);
        var predicted = clip.ZeroShotLogits(images, text).argmax(-1).data<long>().ToArray();
        return predicted.Zip(labels).Count(p => p.First == p.Second) / (double)labels.Count;
    }

    [TestCase("tiny_openai.pt", null, TestName = "OpenAI state dict (torch.save zip)")]
    [TestCase("tiny_torchscript.pt", null, TestName = "OpenAI TorchScript archive (fp16)")]
    [TestCase("tiny_hf.safetensors", "tiny_tecoa.pt", TestName = "Hugging Face safetensors with a TeCoA image tower")]
    public void RunsEndToEndOnAnImageFolder(string checkpoint, string? tecoa)
    {
        string images = ClipSampleFixture.ImageFolder(Path.Combine(_dir, "images"), perClass: 4);
        string clipPath = ClipSampleFixture.File(checkpoint);
        string? tecoaPath = tecoa is null ? null : ClipSampleFixture.File(tecoa);
        // TorchScript archives run code when loaded: the sample takes them only with the explicit opt-in.
        bool allowTorchScript = ClipLoader.DetectFormat(clipPath) == CheckpointFormat.TorchScript;
        var options = ClipSampleFixture.Quick(clipPath, Path.Combine(_dir, "run")) with { ImageFolder = images, TeCoAPath = tecoaPath, AllowTorchScript = allowTorchScript };
        var progress = new Recorder();

        var results = ClipSampleRunner.Run(options, progress);

        // Folders sorted by ordinal name: blue_sky is label 0, red_apple label 1; '_' reads as a space.
        Assert.That(results.ClassNames, Is.EqualTo(new[] { "blue sky", "red apple" }));
        Assert.That(results.TrainImages, Is.EqualTo(2 * 2));
        Assert.That(results.TestImages, Is.EqualTo(2 * (4 - 2)), "every image not drawn for training is tested");
        Assert.That(results.Device, Is.EqualTo("cpu"));
        Assert.That(results.Reports.Select(r => r.Name), Is.EqualTo(Methods));
        foreach (var report in results.Reports)
        {
            Assert.That(report.Images, Is.EqualTo(4));
            Assert.That(report.ByEpsilon.Select(e => e.Epsilon), Is.EqualTo(new[] { 4.0 / 255 }));
            Assert.That(report.ByEpsilon[0].RobustAccuracy * 4, Is.EqualTo(Math.Round(report.ByEpsilon[0].RobustAccuracy * 4)).Within(1e-9));
        }
        // DEFEAT is attacked through each output; the baselines through their one output.
        Assert.That(results.Reports[3].ByEpsilon[0].RobustAccuracyByTarget.Keys, Is.EquivalentTo(new[] { "fused", "clean", "robust" }));
        Assert.That(results.Reports[0].ByEpsilon[0].RobustAccuracyByTarget.Keys, Is.EquivalentTo(new[] { "fused" }));
        Assert.That(results.Reports[2].ByEpsilon[0].RobustAccuracyByTarget.Keys, Is.EquivalentTo(new[] { "fused" }));

        // The zero-shot row equals CLIP's own zero-shot prediction on the same held-out images.
        var listed = ImageFileDataset.FromFolder(images);
        var rest = FewShotSplit.Draw(listed.Labels(), 2, options.Shots, options.Seed).Rest;
        double expected = DirectZeroShotAccuracy(clipPath, tecoaPath, rest.Select(i => listed.Files[(int)i].Path).ToList(),
            rest.Select(i => listed.Files[(int)i].Label).ToList(), results.ClassNames);
        Assert.That(results.Reports[0].CleanAccuracy, Is.EqualTo(expected).Within(1e-12));

        // Table, plot and one checkpoint per trained method.
        string table = System.IO.File.ReadAllText(results.TablePath);
        foreach (var m in Methods) Assert.That(table, Does.Contain($"| {m} |"));
        Assert.That(table, Does.StartWith("images, 2-shot, 2 classes"));
        var png = System.IO.File.ReadAllBytes(results.PlotPath);
        Assert.That(png.Take(8), Is.EqualTo(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }));
        foreach (var slug in new[] { "apt-style", "fap", "defeat--official-", "defeat--anti-collapse-" })
            Assert.That(Directory.EnumerateFiles(Path.Combine(options.Output, "checkpoints", slug)), Is.Not.Empty, slug);

        // Each stage reported, and each ran to its end.
        var last = progress.Reports.GroupBy(p => p.Stage).ToDictionary(g => g.Key, g => g.Last());
        Assert.That(last.Keys, Is.SupersetOf(new[] { "load few-shot images", "load test images", "train APT-style", "evaluate zero-shot", "evaluate DEFEAT (official)" }));
        Assert.That(last.Values.Where(p => p.Stage.StartsWith("train", StringComparison.Ordinal) || p.Stage.StartsWith("load", StringComparison.Ordinal)),
            Has.All.Matches<StageProgress>(p => p.Done == p.Total));
    }

    [Test]
    public void AutoAttackRunsOnEveryMethodAndTheTableComparesSquareWithTheGradientAttacks()
    {
        string images = ClipSampleFixture.ImageFolder(Path.Combine(_dir, "images"), perClass: 4);
        var options = ClipSampleFixture.Quick(ClipSampleFixture.File("tiny_openai.pt"), Path.Combine(_dir, "run")) with { ImageFolder = images, AutoAttack = true };

        var results = ClipSampleRunner.Run(options, new Recorder());

        // One PGD row per method, then one adaptive row per method at the largest radius.
        Assert.That(results.Reports.Select(r => r.Name), Is.EqualTo(Methods.Concat(Methods.Select(m => $"{m} [adaptive]"))));
        foreach (var report in results.Reports.Skip(Methods.Length))
        {
            var r = report.ByEpsilon.Single();
            // Two classes: AutoAttack skips APGD-T (it needs 4), as the reference does; Square is the gradient-free check.
            Assert.That(r.RobustAccuracyByTarget.Keys.Take(3), Is.EqualTo(new[] { "aa-apgd-ce/fused", "aa-fab-t/fused", "aa-square/fused" }), report.Name);
            Assert.That(r.GradientMasking, Is.Not.Null, report.Name);
            // Survivors only: each attack's figure is cumulative, so it never rises along the list, and ends at the worst case.
            var cumulative = r.RobustAccuracyByTarget.Values.ToList();
            for (int k = 1; k < cumulative.Count; k++) Assert.That(cumulative[k], Is.LessThanOrEqualTo(cumulative[k - 1]), report.Name);
            Assert.That(cumulative[^1], Is.EqualTo(r.RobustAccuracy).Within(1e-12));
        }
        Assert.That(System.IO.File.ReadAllText(results.TablePath), Does.Contain("Gradient-free against white-box attacks:"));
    }

    [Test]
    public void RunsOnACoOpSplitWithItsOwnClassNamesAndATestSubset()
    {
        string root = ClipSampleFixture.ImageFolder(Path.Combine(_dir, "root"), perClass: 4);
        // CoOp's layout: [relpath, label, classname]; labels 0 = sky, 1 = apple (the reverse of the folder order).
        string Entry(string folder, int i, int label, string name) => $"[\"{folder}/img_{i}.png\", {label}, \"{name}\"]";
        string json = $$"""
            {"train": [{{Entry("blue_sky", 0, 0, "sky")}}, {{Entry("blue_sky", 1, 0, "sky")}}, {{Entry("red_apple", 0, 1, "apple")}}, {{Entry("red_apple", 1, 1, "apple")}}],
             "val": [],
             "test": [{{Entry("blue_sky", 2, 0, "sky")}}, {{Entry("red_apple", 2, 1, "apple")}}, {{Entry("red_apple", 3, 1, "apple")}}]}
            """;
        string split = Path.Combine(_dir, "split_tiny.json");
        System.IO.File.WriteAllText(split, json);
        // Two epochs (a warm-up, then the cosine schedule) and one test image per class.
        var options = ClipSampleFixture.Quick(ClipSampleFixture.File("tiny_openai.pt"), Path.Combine(_dir, "run")) with
        {
            SplitPath = split, ImageRoot = root, Epochs = 2, TestPerClass = 1,
        };

        var results = ClipSampleRunner.Run(options);

        Assert.That(results.ClassNames, Is.EqualTo(new[] { "sky", "apple" }));
        Assert.That(results.TrainImages, Is.EqualTo(4));
        Assert.That(results.TestImages, Is.EqualTo(2), "one of each class from the split's test list");
        Assert.That(results.Reports.Select(r => r.Images), Has.All.EqualTo(2));
        Assert.That(System.IO.File.ReadAllText(results.TablePath), Does.StartWith("split_tiny, 2-shot, 2 classes"));
        // The one sky test image, and one of the two apple ones: the zero-shot row is CLIP's accuracy on one of those pairs.
        string F(string folder, int i) => Path.Combine(root, folder, $"img_{i}.png");
        double first = DirectZeroShotAccuracy(options.ClipPath, null, [F("blue_sky", 2), F("red_apple", 2)], [0, 1], ["sky", "apple"]);
        double second = DirectZeroShotAccuracy(options.ClipPath, null, [F("blue_sky", 2), F("red_apple", 3)], [0, 1], ["sky", "apple"]);
        Assert.That(results.Reports[0].CleanAccuracy, Is.EqualTo(first).Within(1e-12).Or.EqualTo(second).Within(1e-12));
        foreach (var slug in new[] { "apt-style", "fap", "defeat--official-", "defeat--anti-collapse-" })
            Assert.That(Directory.EnumerateFiles(Path.Combine(options.Output, "checkpoints", slug), "*epoch-0002*", SearchOption.AllDirectories), Is.Not.Empty, slug);
    }

    [Test]
    public void CancellationStopsTheRun()
    {
        string images = ClipSampleFixture.ImageFolder(Path.Combine(_dir, "images"), perClass: 3);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var options = ClipSampleFixture.Quick(ClipSampleFixture.File("tiny_openai.pt"), Path.Combine(_dir, "run")) with { ImageFolder = images };
        Assert.That(() => ClipSampleRunner.Run(options, cancellationToken: cts.Token), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(ClipSampleCommand.Guarded(() => ClipSampleRunner.Run(options, cancellationToken: cts.Token)), Is.EqualTo(ClipSampleCommand.Cancelled));
    }
}
