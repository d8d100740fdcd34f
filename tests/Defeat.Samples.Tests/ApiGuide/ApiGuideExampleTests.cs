using Defeat.Checkpoints;
using Defeat.Clip;
using Defeat.Data;
using Defeat.Model;
using Defeat.Prompting;

namespace Defeat.Tests.Samples.ApiGuide;

/// <summary>Runs every example of docs/api.md (<see cref="ApiGuideExamples"/>) and checks what it computed
/// against expectations worked out here.</summary>
public class ApiGuideExampleTests
{
    private string _dir = "";

    [SetUp]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("defeat-api-guide-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    // Grey 8x8 images, 2x2 patches: a 4x4 grid of D = 16 features.
    private static ClipModel TinyClip(long seed = 3)
    {
        var clip = new ClipModel(ClipConfig.Tiny(imageResolution: 8, patchSize: 2, inputChannels: 1, width: 32, layers: 1, heads: 1, embedDim: 16));
        clip.InitializeParameters(seed);
        return clip;
    }

    private static LabeledImages TwoClasses(int perClass, ulong seed)
    {
        var g = new Generator(seed);
        var dark = rand([perClass, 1, 8, 8], generator: g).Times(0.5);
        var bright = rand([perClass, 1, 8, 8], generator: g).Times(0.5).Plus(0.5);
        var labels = cat([zeros(perClass, dtype: ScalarType.Int64), ones(perClass, dtype: ScalarType.Int64)]);
        return new LabeledImages(cat([dark, bright]), labels, ["sandal", "coat"]);
    }

    private static double Max(Tensor t) => t.max().item<float>();

    [Test]
    public void QuickStartTrainsOneStepOnTheLoadedCheckpointAndPredicts()
    {
        using var clip = TinyClip();
        var path = Path.Combine(_dir, "clip.safetensors");
        Defeat.Clip.Loading.ClipLoader.Save(clip, path);
        using var data = TwoClasses(perClass: 2, seed: 5);
        string[] classes = ["sandal", "coat"];

        var (predicted, loss, context) = ApiGuideExamples.QuickStart(path, classes, data.Images, data.Labels);

        Assert.That(predicted.shape, Is.EqualTo(new long[] { 4 }));
        Assert.That(predicted.data<long>().ToArray(), Has.All.InRange(0L, 1L));
        Assert.That(double.IsFinite(loss) && loss > 0, Is.True, $"loss {loss}");
        // The context started where a fresh model's starts (same seed) and the SGD step moved it.
        using var fresh = DefeatModel.Create(clip, classes);
        var start = fresh.TrainableStateDict()["prompt_learner.ctx"];
        Assert.That(context.shape, Is.EqualTo(start.shape));
        Assert.That(context.allclose(start, 0, 0), Is.False);
        Assert.That(context.isfinite().all().item<bool>(), Is.True);
    }

    [Test]
    public void VectorQuantizerPicksTheNearestCodeword()
    {
        var z = randn([2, 3, 16], generator: new Generator(2));
        var (indices, quantized, codes, codebook, loss) = ApiGuideExamples.VectorQuantizerExample(z);

        Assert.That(indices.shape, Is.EqualTo(new long[] { 2, 3 }));
        var zs = z.reshape(-1, 16).data<float>().ToArray();
        var cb = codebook.data<float>().ToArray();
        var expected = Enumerable.Range(0, 6).Select(r => (long)Enumerable.Range(0, 32)
            .MinBy(k => Enumerable.Range(0, 16).Sum(d => Math.Pow((double)zs[r * 16 + d] - cb[k * 16 + d], 2)))).ToArray();
        Assert.That(indices.reshape(-1).data<long>().ToArray(), Is.EqualTo(expected));
        Assert.That(quantized.allclose(codes, 0, 0), Is.True);
        // codebook + 0.25 * commitment, both the mean squared distance to the chosen codeword.
        var mse = (z - codes).Square().mean().item<float>();
        Assert.That(loss, Is.EqualTo(1.25 * mse).Within(1e-5 * Math.Max(1, mse)));
    }

    [Test]
    public void PerturbShieldLossIsTheWeightedSumOfItsParts()
    {
        manual_seed(4);
        var grid = randn([3, 4, 16], generator: new Generator(6));
        var classFeature = randn([3, 16], generator: new Generator(7));
        var (projected, result, loss) = ApiGuideExamples.PerturbShieldExample(grid, classFeature);
        using var _ = result;

        Assert.That(projected.shape, Is.EqualTo(new long[] { 3, 16 }));
        Assert.That(result.Indices.shape, Is.EqualTo(new long[] { 3, 4 }));
        var alignment = (nn.functional.normalize(classFeature, dim: -1) - nn.functional.normalize(projected, dim: -1)).abs().mean();
        // The commitment term already carries the quantizer's beta (0.25): 0.1 * (codebook + 0.25 * MSE) = 0.1 * codebook + 0.025 * MSE.
        var expected = result.ReconstructionLoss.Times(0.5).Plus(result.CodebookLoss.Plus(result.CommitmentLoss).Times(0.1)).Plus(alignment.Times(10));
        Assert.That(loss.item<float>(), Is.EqualTo(expected.item<float>()).Within(1e-5));
    }

    [Test]
    public void PromptLearnerLearnsOnlyTheContextAndRegularisesTowardTheTemplate()
    {
        using var clip = TinyClip();
        var (learner, t, textReg) = ApiGuideExamples.PromptLearnerExample(clip);

        Assert.That(t.shape, Is.EqualTo(new long[] { 2, 16 }));
        Assert.That(t.norm(1).allclose(ones(2), 1e-5, 1e-5), Is.True);
        var parameters = learner.named_parameters().ToList();
        Assert.That(parameters.Select(p => p.name), Is.EqualTo(new[] { "ctx" }));
        Assert.That(parameters[0].parameter.shape, Is.EqualTo(new long[] { 4, 32 }));
        // The hand-written side, computed here from CLIP itself: normalize(encode("a photo of a {class}.")).
        var handwritten = nn.functional.normalize(clip.EncodeText(clip.Tokenize(["a photo of a sandal.", "a photo of a coat."])), dim: -1);
        Assert.That(textReg.item<float>(), Is.EqualTo((t - handwritten).abs().mean().item<float>()).Within(1e-5));
    }

    [Test]
    public void LogitFusionAveragesLogitsOrProbabilities()
    {
        var clean = randn([4, 3], generator: new Generator(1));
        var robust = randn([4, 3], generator: new Generator(2));
        var (fused, mixture) = ApiGuideExamples.LogitFusionExample(clean, robust);

        Assert.That(fused.allclose(clean.Plus(robust).Over(2), 1e-6, 1e-6), Is.True);
        var probabilities = clean.softmax(-1).Times(0.5).Plus(robust.softmax(-1).Times(0.5));
        Assert.That(mixture.exp().allclose(probabilities, 1e-5, 1e-6), Is.True);
    }

    [Test]
    public void PgdAttackStaysInTheBallAndRaisesTheLoss()
    {
        manual_seed(8);
        var classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, 2));
        var images = rand([6, 1, 8, 8], generator: new Generator(3));
        var labels = tensor(new long[] { 0, 1, 0, 1, 0, 1 });

        var adversarial = ApiGuideExamples.PgdAttackExample(classifier, images, labels);

        const double eps = 4 / 255.0;
        Assert.That(Max((adversarial - images).abs()), Is.LessThanOrEqualTo(eps));
        Assert.That(adversarial.min().item<float>(), Is.GreaterThanOrEqualTo(0));
        Assert.That(Max(adversarial), Is.LessThanOrEqualTo(1));
        using (no_grad())
        {
            var before = nn.functional.cross_entropy(classifier.call(images), labels).item<float>();
            var after = nn.functional.cross_entropy(classifier.call(adversarial), labels).item<float>();
            Assert.That(after, Is.GreaterThan(before));
        }
    }

    [Test]
    public void AutoAttackReportsEachAttackAndItsWorstCase()
    {
        manual_seed(18);
        var classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, 5));
        var images = rand([8, 1, 8, 8], generator: new Generator(13));
        Tensor labels;
        using (no_grad()) labels = classifier.call(images).argmax(1);

        var (adversarial, report, robust) = ApiGuideExamples.AutoAttackExample(classifier, images, labels);

        Assert.That(report.Stages.Select(s => s.Name), Is.EqualTo(new[] { "apgd-ce", "apgd-t", "fab-t", "square" }));
        Assert.That(report.CleanAccuracy, Is.EqualTo(1.0), "the labels are the model's own predictions");
        Assert.That(Max((adversarial - images).abs()), Is.LessThanOrEqualTo(4 / 255.0));
        double accuracy;
        using (no_grad())
            accuracy = classifier.call(adversarial).argmax(1).eq(labels).to_type(ScalarType.Float64).mean().item<double>();
        Assert.That(robust, Is.EqualTo(accuracy).Within(1e-12));
        Assert.That(report.RobustAccuracy, Is.EqualTo(report.Stages[^1].RobustAccuracy));
        Assert.That(report.ToString(), Does.Contain("apgd-ce").And.Contain("robust"));
    }

    [Test]
    public void DefeatModelFromItsPartsHasOnlyTheDefeatParameters()
    {
        using var clip = TinyClip();
        using var model = ApiGuideExamples.DefeatModelExample(clip, ["sandal", "coat"]);

        var names = model.named_parameters().Select(p => p.name).ToList();
        Assert.That(names, Does.Contain("prompt_learner.ctx").And.Contain("shield.cls_projection.linear.weight"));
        Assert.That(names.Where(n => !n.StartsWith("prompt_learner.", StringComparison.Ordinal) && !n.StartsWith("shield.", StringComparison.Ordinal)), Is.Empty);
        Assert.That(clip.parameters().All(p => !p.requires_grad), Is.True, "the backbone is frozen");
        using var data = TwoClasses(perClass: 1, seed: 9);
        using var output = model.call(data.Images, data.Labels);
        Assert.That(output.Total.item<float>(), Is.EqualTo(
            output.CrossEntropy.Plus(output.AlignmentLoss.Times(10)).Plus(output.TextRegularization.Times(20)).Plus(output.VqVaeLoss).item<float>()).Within(1e-4));
    }

    [Test]
    public void TrainerEvaluatorAndCheckpointStoreRunOnTheModel()
    {
        using var clip = TinyClip();
        using var model = ApiGuideExamples.DefeatModelExample(clip, ["sandal", "coat"]);
        using var train = TwoClasses(perClass: 2, seed: 10);
        var before = model.TrainableStateDict()["prompt_learner.ctx"].clone();

        var history = ApiGuideExamples.DefeatTrainerExample(model, train, Path.Combine(_dir, "run"));
        Assert.That(history, Has.Count.EqualTo(1));
        Assert.That(history[0].Epoch, Is.EqualTo(1));
        Assert.That(double.IsFinite(history[0].MeanLoss), Is.True);
        Assert.That(model.TrainableStateDict()["prompt_learner.ctx"].allclose(before, 0, 0), Is.False, "training moved the context");
        Assert.That(new CheckpointStore(Path.Combine(_dir, "run")).Epochs(), Is.EqualTo(new[] { 1 }));

        using var test = TwoClasses(perClass: 3, seed: 11);
        var report = ApiGuideExamples.RobustnessEvaluatorExample(model, test);
        Assert.That(report.Images, Is.EqualTo(6));
        double clean;
        using (no_grad())
            clean = model.Logits(test.Images).argmax(-1).eq(test.Labels).to_type(ScalarType.Float64).mean().item<double>();
        Assert.That(report.CleanAccuracy, Is.EqualTo(clean).Within(1e-9));
        Assert.That(report.ByEpsilon.Select(r => r.Epsilon), Is.EqualTo(new[] { 1 / 255.0, 4 / 255.0 }));
        foreach (var r in report.ByEpsilon)
            Assert.That(r.HarmonicMean, Is.EqualTo(clean + r.RobustAccuracy == 0 ? 0 : 2 * clean * r.RobustAccuracy / (clean + r.RobustAccuracy)).Within(1e-9));

        using var other = DefeatModel.Create(clip, ["sandal", "coat"], promptOptions: new PromptLearnerOptions { ContextLength = 4, Seed = 99 },
            shieldOptions: new Shield.PerturbShieldOptions { HiddenDim = 8, CodebookSize = 32 });
        Assert.That(other.TrainableStateDict()["prompt_learner.ctx"].allclose(model.TrainableStateDict()["prompt_learner.ctx"], 0, 0), Is.False);
        var epochs = ApiGuideExamples.CheckpointStoreExample(model, other, Path.Combine(_dir, "store"));
        Assert.That(epochs, Is.EqualTo(new[] { 3 }));
        var mine = model.TrainableStateDict();
        foreach (var (key, value) in other.TrainableStateDict())
            Assert.That(value.allclose(mine[key], 0, 0), Is.True, key);
    }

    [Test]
    public void ClipRoundTripsThroughSafetensorsAndClassifiesZeroShot()
    {
        using var clip = TinyClip();
        var photos = rand([2, 1, 12, 10], generator: new Generator(4));
        var (pixels, features, ids, tokens, classes, logits) = ApiGuideExamples.ClipExample(clip, Path.Combine(_dir, "clip.safetensors"), photos);
        using var _ = features;

        Assert.That(pixels.shape, Is.EqualTo(new long[] { 2, 1, 8, 8 }));
        Assert.That(features.ClassFeature.shape, Is.EqualTo(new long[] { 2, 16 }));
        Assert.That(features.GridFeatures.shape, Is.EqualTo(new long[] { 2, 16, 16 }));
        Assert.That(ids.shape, Is.EqualTo(new long[] { 2, 77 }));
        // CLIP's published ids: <start> a photo of a ... ; "a photo of a cat" is 320 1125 539 320 2368.
        Assert.That(ids[0, ..5].data<long>().ToArray(), Is.EqualTo(new long[] { 49406, 320, 1125, 539, 320 }));
        Assert.That(tokens, Is.EqualTo(new[] { 320, 1125, 539, 320, 2368 }));
        // The loaded copy computes what the original computes: exp(logit_scale) · cos(image, class).
        using var original = clip.EncodeImage(pixels);
        var expected = clip.LogitScale * nn.functional.normalize(original.ClassFeature, dim: -1).matmul(classes.t());
        Assert.That(logits.allclose(expected, 1e-4, 1e-4), Is.True);
        Assert.That(classes.norm(1).allclose(ones(2), 1e-5, 1e-5), Is.True);
    }
}
