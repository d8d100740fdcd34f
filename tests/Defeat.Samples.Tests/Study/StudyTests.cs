using Defeat.Clip;
using Defeat.Data;
using Defeat.Prompting;
using Defeat.Quantization;
using Defeat.Samples.Shared;
using Defeat.Samples.Shared.Study;
using Microsoft.Extensions.Logging.Abstractions;

namespace Defeat.Samples.Tests.Study;

public class StudyTests
{
    private string _dir = "";

    [SetUp]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("defeat-study-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    private static StudyCell Cell(string configuration, int seed, double clean, string cleanBits, string robustBits, string protocol = "p") =>
        new(configuration, seed, protocol, cleanBits.Length, 32, clean, cleanBits, new Dictionary<string, double>(), null, null,
            [new StudyEpsilonResult(4.0 / 255, robustBits.Count(c => c == '1') / (double)robustBits.Length,
                new Dictionary<string, double> { ["pgd-ce/fused"] = 0.5 }, null, robustBits)],
            10, 20, new DateTime(2026, 12, 2, 0, 0, 0, DateTimeKind.Utc));

    /// <summary>A one-block tiny CLIP, twelve random 8x8 images of two classes, and a runner over them.</summary>
    private sealed class TinyStudy : IDisposable
    {
        private readonly ClipModel _clip = new(ClipConfig.Tiny(imageResolution: 8, patchSize: 2, inputChannels: 1, width: 32, layers: 1, heads: 1, embedDim: 16));
        private readonly LabeledImages _images;
        private readonly LabeledImages _test;

        public TinyStudy(StudyProtocol protocol, string folder)
        {
            _clip.InitializeParameters(seed: 3);
            var g = new Generator(11);
            _images = new LabeledImages(cat([rand([6, 1, 8, 8], generator: g).Times(0.5), rand([6, 1, 8, 8], generator: g).Times(0.5).Plus(0.5)]).to_type(ScalarType.Float32),
                cat([zeros(6, dtype: ScalarType.Int64), ones(6, dtype: ScalarType.Int64)]), ["sandal", "coat"]);
            _test = _images.Subset(FewShotSplit.Stratified(_images.LabelArray(), 2, protocol.TestPerClass, protocol.TestSeed));
            Runner = new StudyRunner(protocol, _clip, _images.ClassNames,
                (seed, shots) => _images.Subset(FewShotSplit.Draw(_images.LabelArray(), 2, shots, seed).FewShot), _test,
                seed => new PromptLearnerOptions { Seed = (ulong)seed, ContextLength = 2 }, folder, NullLoggerFactory.Instance);
        }

        public StudyRunner Runner { get; }

        public void Dispose()
        {
            _test.Dispose();
            _images.Dispose();
            _clip.Dispose();
        }
    }

    [Test]
    public void TheSamplesDefeatPresetIsTheStudysKMeansDeadConfiguration()
    {
        // The sample ships what the study measured as kmeans-dead: the same shield options, seed for seed, written out
        // here by hand (half the feature width, 512 codes, k-means init, dead-code restarts at 0.01, gradient codebook).
        using var clip = new ClipModel(ClipConfig.Tiny(imageResolution: 8, patchSize: 2, inputChannels: 1, width: 32, layers: 1, heads: 1, embedDim: 16));
        var preset = RobustnessStudy.AntiCollapseShield(clip, seed: 7);
        Assert.That(preset, Is.EqualTo(StudyConfigurations.Find(["kmeans-dead"]).Single().Shield!(clip, 7)));
        Assert.That((preset.FeatureDim, preset.HiddenDim, preset.CodebookSize), Is.EqualTo((clip.FeatureDim, clip.FeatureDim / 2, 512)));
        var q = preset.Quantizer!;
        Assert.That((q.KMeansInit, q.DeadCodeThreshold, q.CodebookUpdate, q.Seed), Is.EqualTo((true, 0.01, CodebookUpdate.Gradient, 7UL)));
    }

    [Test]
    public void ShardsPartitionTheCellsExactly()
    {
        var configurations = StudyConfigurations.Find(["apt", "official", "kmeans-dead"]);
        var all = StudyRunner.Plan(configurations, [1, 2]);
        Assert.That(all.Select(c => $"{c.Configuration.Name}/{c.Seed}"),
            Is.EqualTo(new[] { "apt/1", "apt/2", "official/1", "official/2", "kmeans-dead/1", "kmeans-dead/2" }));
        var shards = Enumerable.Range(1, 4).Select(i => StudyRunner.Plan(configurations, [1, 2], i, 4)).ToList();
        Assert.That(shards.Select(s => s.Count), Is.EqualTo(new[] { 2, 2, 1, 1 }));
        Assert.That(shards.SelectMany(s => s).OrderBy(c => c.Configuration.Name).ThenBy(c => c.Seed),
            Is.EquivalentTo(all), "every cell in exactly one shard");
        Assert.Throws<ArgumentOutOfRangeException>(() => StudyRunner.Plan(configurations, [1], 5, 4));
        Assert.Throws<ArgumentException>(() => StudyConfigurations.Find(["no-such-configuration"]));
    }

    [Test]
    public void AttackColumnsFollowTheOrderRunWhenConfigurationsRanDifferentSuites()
    {
        // As the AutoAttack cells: zero-shot has no branch attacks; DEFEAT ran three more, between and after its own.
        string[] zeroShot = ["aa-apgd-ce/fused", "aa-square/fused", "pgd-ce/fused", "pgd-dlr/fused"];
        string[] defeat = ["aa-apgd-ce/fused", "aa-square/fused", "pgd-ce/fused", "pgd-ce/clean", "pgd-ce/robust", "pgd-dlr/fused", "pgd-softvq/fused"];
        Assert.That(StudySummary.MergedOrder([zeroShot, defeat]), Is.EqualTo(defeat));
        // An attack only the shorter list has goes right after its predecessor there.
        Assert.That(StudySummary.MergedOrder([["a", "b", "c"], ["a", "x", "b"]]), Is.EqualTo(new[] { "a", "x", "b", "c" }));
        Assert.That(StudySummary.MergedOrder([["b", "c"], ["x"]]), Is.EqualTo(new[] { "x", "b", "c" }));
        Assert.That(StudySummary.MergedOrder([]), Is.Empty);
    }

    [Test]
    public void SummaryIsComputedFromCellsAloneAndPairsImagesWithTheBaseline()
    {
        // Two seeds of 4 images each. apt robust: 1100 / 1000; official robust: 1110 / 1101.
        var cells = new[]
        {
            Cell("apt", 1, 0.75, "1110", "1100"), Cell("apt", 2, 0.5, "1100", "1000"),
            Cell("official", 1, 1.0, "1111", "1110"), Cell("official", 2, 0.75, "1110", "1101"),
        };
        foreach (var c in cells) c.Save(_dir);
        var summary = StudySummary.FromFolder(_dir);

        var official = summary.Configurations.Single(c => c.Configuration == "official");
        // Robust per seed 0.75 and 0.75: mean 0.75, zero spread. Clean 1.0 and 0.75: mean 0.875, sd 0.17678, t(1) = 12.706.
        Assert.That(official.Robust[0].Mean, Is.EqualTo(0.75).Within(1e-12));
        Assert.That(official.Clean.Mean, Is.EqualTo(0.875).Within(1e-12));
        Assert.That(official.Clean.HalfWidth, Is.EqualTo(12.706 * Math.Sqrt(0.03125) / Math.Sqrt(2)).Within(1e-9));
        // Pairs over 8 images: only official right on seed 1 image 2, seed 2 images 1 and 3 -> b = 3, c = 0.
        var paired = official.VersusBaseline[0]!;
        Assert.That((paired.Images, paired.OnlyA, paired.OnlyB), Is.EqualTo((8, 3, 0)));
        Assert.That(paired.Difference.Mean, Is.EqualTo(3 / 8.0).Within(1e-12));
        Assert.That(paired.McNemarP, Is.EqualTo(2.0 / 8).Within(1e-12));
        Assert.That(summary.Configurations.Single(c => c.Configuration == "apt").VersusBaseline[0], Is.Null);
        Assert.That(summary.Markdown(), Does.Contain("| official | 2 |").And.Contain("+37.5 ["));

        // Paired with a second configuration: its table, printed after the first, pairs the same images the other way.
        var versusOfficial = StudySummary.FromFolder(_dir, "official");
        Assert.That(versusOfficial.PairedMarkdown(), Does.Contain("Paired with `official`").And.Contain("| apt | 8 |").And.Contain("-37.5 ["));
        Assert.That(summary.Markdown(versusOfficial), Does.Contain("Paired with `apt`").And.Contain("Paired with `official`"));

        // A cell of another protocol is never pooled with these.
        Cell("kmeans-dead", 1, 1.0, "1111", "1111", protocol: "q").Save(_dir);
        Assert.Throws<InvalidDataException>(() => StudySummary.FromFolder(_dir));
    }

    [Test]
    public void ATruncatedCellFileIsRefused()
    {
        string path = Cell("apt", 1, 0.75, "1110", "1100").Save(_dir);
        Assert.That(StudyCell.Load(path).CleanCorrect, Is.EqualTo("1110"));
        File.WriteAllText(path, File.ReadAllText(path)[..100]);
        Assert.Throws<InvalidDataException>(() => StudyCell.Load(path));
        Assert.That(Directory.GetFiles(_dir), Has.Length.EqualTo(1), "no temporary file left behind");
    }

    [Test]
    public void RunnerWritesOneCellPerConfigurationAndSeedAndNeverRecomputesAFinishedOne()
    {
        var protocol = new StudyProtocol { Shots = 2, Epochs = 2, TestPerClass = 2, PgdSteps = 1, EvaluationBatchSize = 4, SoftQuantizationTemperatures = [1] };
        using var tiny = new TinyStudy(protocol, _dir);
        var runner = tiny.Runner;
        var cells = StudyRunner.Plan(StudyConfigurations.Find(["zero-shot", "apt", "official"]), [1, 2]);
        var progress = new Progress<StageProgress>();

        Assert.That(runner.Run(cells, progress, CancellationToken.None), Is.EqualTo(6));
        var files = Directory.GetFiles(runner.CellFolder).Order().ToList();
        Assert.That(files.Select(Path.GetFileName), Is.EqualTo(new[]
        {
            "apt--seed1.json", "apt--seed2.json", "official--seed1.json", "official--seed2.json", "zero-shot--seed1.json", "zero-shot--seed2.json",
        }));
        var written = files.ToDictionary(f => f, File.ReadAllText);

        Assert.That(runner.Run(cells, progress, CancellationToken.None), Is.EqualTo(0), "finished cells are skipped");
        foreach (var f in files) Assert.That(File.ReadAllText(f), Is.EqualTo(written[f]));

        var official = StudyCell.Load(files[2]);
        Assert.That(official.TestImages, Is.EqualTo(4));
        Assert.That(official.ByEpsilon.Select(r => r.Epsilon), Is.EqualTo(protocol.Epsilons));
        Assert.That(official.ByEpsilon[0].ByAttack.Keys, Is.EquivalentTo(new[] { "pgd-ce/fused", "pgd-ce/clean", "pgd-ce/robust", "pgd-softvq/fused" }));
        // The worst case is no better than any single attack, and the per-image bits agree with the accuracies.
        foreach (var r in official.ByEpsilon)
        {
            Assert.That(r.Robust, Is.LessThanOrEqualTo(r.ByAttack.Values.Min() + 1e-12));
            Assert.That(StudyCell.Outcomes(r.RobustCorrect).Count(b => b) / 4.0, Is.EqualTo(r.Robust).Within(1e-12));
        }
        Assert.That(StudyCell.Outcomes(official.CleanCorrect).Count(b => b) / 4.0, Is.EqualTo(official.Clean).Within(1e-12));
        Assert.That(StudySummary.FromFolder(runner.CellFolder).Configurations.Select(c => c.Configuration),
            Is.EqualTo(new[] { "zero-shot", "apt", "official" }));
    }

    [Test]
    public void ProtocolFingerprintsKeepTheScreeningCellsPoolable()
    {
        // The fingerprint stored in every screening cell measured before survivors-only and AutoAttack existed
        // (docs/study/screen/cells): new options must not change it, or those cells could no longer be pooled.
        Assert.That(StudyProtocol.Screening().Fingerprint(), Is.EqualTo(
            "shots=16;epochs=20;lr=0.02;batch=32;train-eps=4/255;test=100/class@20261;eps=1,4/255;pgd=20;suite=Screening;restarts=2;softvq=0.5,2"));
        Assert.That(StudyProtocol.Final().Fingerprint(), Does.EndWith(";pgd=100;suite=Screening;restarts=2;softvq=0.5,2;survivors-only"));
        var aa = StudyProtocol.AutoAttackCheck();
        Assert.That(aa.Fingerprint(), Does.Contain("test=50/class@20261;eps=4/255;pgd=100").And.EndWith(";survivors-only;autoattack"));
    }

    [Test]
    public void FapRunsThroughTheStudyWithItsOnlyTargetAttacked()
    {
        using var tiny = new TinyStudy(new StudyProtocol { Shots = 2, Epochs = 2, TestPerClass = 2, PgdSteps = 1, EvaluationBatchSize = 4 }, _dir);
        var runner = tiny.Runner;
        var fap = StudyConfigurations.Find(["fap"]).Single();

        var model = runner.Build(fap, seed: 1);
        using (var owned = (IDisposable)model)
        {
            Assert.That(model, Is.InstanceOf<Defeat.Model.FapModel>());
            // The tiny CLIP has one block: FAP's depth 9 is capped to 1 (only the layer-0 prompts).
            Assert.That(((Defeat.Model.FapModel)model).PromptLearner.Options.Depth, Is.EqualTo(1));
        }
        var cell = runner.RunCell(fap, 1, new Progress<StageProgress>(), CancellationToken.None);
        // Two classes and no branches: only cross-entropy PGD on the prediction (DLR needs 3 classes), no codes.
        Assert.That(cell.ByEpsilon[0].ByAttack.Keys, Is.EqualTo(new[] { "pgd-ce/fused" }));
        Assert.That(cell.CodesUsed, Is.Null);
        Assert.That(cell.TrainImages, Is.EqualTo(4));
        foreach (var r in cell.ByEpsilon) Assert.That(r.Robust, Is.LessThanOrEqualTo(cell.Clean + 1e-12));
    }

    [Test]
    public void ADivergingCellIsReportedAndTheOthersStillRun()
    {
        using var tiny = new TinyStudy(new StudyProtocol { Shots = 2, Epochs = 2, TestPerClass = 2, PgdSteps = 1, EvaluationBatchSize = 4 }, _dir);
        // A learning rate of 1e30 sends the loss to infinity in the first steps: the trainer stops with TrainingDivergedException.
        var diverging = StudyConfigurations.Find(["apt"]).Single() with { Name = "apt-lr1e30", LearningRate = 1e30, Epochs = 4 };
        var cells = StudyRunner.Plan([diverging, .. StudyConfigurations.Find(["zero-shot"])], [1]);

        Assert.That(tiny.Runner.Run(cells, new Progress<StageProgress>(), CancellationToken.None), Is.EqualTo(1));
        Assert.That(Directory.GetFiles(tiny.Runner.CellFolder).Select(Path.GetFileName).Order(),
            Is.EqualTo(new[] { "apt-lr1e30--seed1.diverged", "zero-shot--seed1.json" }));
        Assert.That(tiny.Runner.Diverged.Select(d => (d.Configuration, d.Seed)), Is.EqualTo(new[] { ("apt-lr1e30", 1) }));
        Assert.That(tiny.Runner.Diverged[0].Reason, Does.Contain("diverged"));

        // The summary, from the folder alone, says which seed is missing and why; a rerun does not train it again.
        var summary = StudySummary.FromFolder(tiny.Runner.CellFolder);
        Assert.That(summary.Diverged.Select(d => (d.Configuration, d.Seed)), Is.EqualTo(new[] { ("apt-lr1e30", 1) }));
        Assert.That(summary.Markdown(), Does.Contain("Diverged in training").And.Contain("- apt-lr1e30 seed 1: ").And.Contain("diverged"));
        Assert.That(tiny.Runner.Run(cells, new Progress<StageProgress>(), CancellationToken.None), Is.EqualTo(0));
    }
}
