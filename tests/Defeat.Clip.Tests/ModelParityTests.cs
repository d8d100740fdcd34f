using Defeat.Clip;
using Defeat.Clip.Loading;

namespace Defeat.Tests.Clip;

/// <summary>
/// The tiny random CLIP of Fixtures/make_fixtures.py, loaded from each checkpoint format, reproduces the reference
/// PyTorch implementation's outputs (openai/CLIP model.py, PyTorch 1.13) to 1e-5.
/// </summary>
public class ModelParityTests
{
    private const double Tolerance = 1e-5;

    private static void AssertMatchesReference(ClipModel model, string prefix = "")
    {
        using var scope = NewDisposeScope();
        var r = Fixture.Reference;
        using var features = model.EncodeImage(r["images"]);
        Fixture.AssertClose(features.ClassFeature, r[prefix + "class_features"], Tolerance, "class features");
        Fixture.AssertClose(features.GridFeatures, r[prefix + "grid_features"], Tolerance, "grid features");
        Fixture.AssertClose(model.EncodeText(r["token_ids"]), r[prefix + "text_features"], Tolerance, "text features");
        Fixture.AssertClose(model.EncodeEmbeddings(r["prompt_embeddings"], r["token_ids"]), r[prefix + "prompt_text_features"], Tolerance, "prompt text features");
        Fixture.AssertClose(model.call(r["images"], r["token_ids"]), r[prefix + "logits_per_image"], 1e-4, "logits per image");
    }

    [Test]
    public void OpenAiStateDictMatchesReference()
    {
        using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        Assert.That(ClipLoader.DetectFormat(Fixture.File("tiny_openai.pt")), Is.EqualTo(CheckpointFormat.PyTorchPickle));
        AssertMatchesReference(model);
    }

    [Test]
    public void HuggingFaceSafetensorsMatchesReference()
    {
        using var model = ClipLoader.Load(Fixture.File("tiny_hf.safetensors"), Fixture.TinyOptions);
        Assert.That(ClipLoader.DetectFormat(Fixture.File("tiny_hf.safetensors")), Is.EqualTo(CheckpointFormat.Safetensors));
        AssertMatchesReference(model);
    }

    [Test]
    public void BothKeyLayoutsGiveIdenticalWeights()
    {
        using var openAi = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        using var hf = ClipLoader.Load(Fixture.File("tiny_hf.safetensors"), Fixture.TinyOptions);
        var a = openAi.state_dict();
        var b = hf.state_dict();
        Assert.That(b.Keys, Is.EquivalentTo(a.Keys));
        foreach (var (key, tensor) in a)
            Assert.That(Fixture.Same(tensor, b[key]), Is.True, key);
    }

    [Test]
    public void Fp16TorchScriptArchiveMatchesReference()
    {
        Assert.That(ClipLoader.DetectFormat(Fixture.File("tiny_torchscript.pt")), Is.EqualTo(CheckpointFormat.TorchScript));
        using var model = ClipLoader.Load(Fixture.File("tiny_torchscript.pt"), Fixture.TinyOptions with { AllowTorchScript = true });
        Assert.That(model.parameters().All(p => p.dtype == ScalarType.Float32), Is.True, "fp16 weights become float32");
        AssertMatchesReference(model);
    }

    [Test]
    public void TorchScriptConvertedByThePrintedPythonLineLoadsWithoutTheOptIn()
    {
        // Fixtures/make_hostile_fixtures.py ran the conversion line of the refusal message on tiny_torchscript.pt.
        var path = Fixture.File("tiny_torchscript-state-dict.pt");
        Assert.That(ClipLoader.DetectFormat(path), Is.EqualTo(CheckpointFormat.PyTorchPickle));
        using var model = ClipLoader.Load(path, Fixture.TinyOptions);
        AssertMatchesReference(model);
    }

    [Test]
    public void TeCoAImageTowerReplacesOnlyTheImageEncoder()
    {
        using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        using var textBefore = model.EncodeText(Fixture.Reference["token_ids"]);
        ClipLoader.LoadImageTower(model, Fixture.File("tiny_tecoa.pt"));
        AssertMatchesReference(model, "tecoa_");
        using var textAfter = model.EncodeText(Fixture.Reference["token_ids"]);
        Assert.That(Fixture.Same(textAfter, textBefore), Is.True, "the text tower is unchanged");
    }

    [Test]
    public void SavedSafetensorsReloadsTheSameModel()
    {
        var dir = Directory.CreateTempSubdirectory("defeat-clip-");
        try
        {
            var path = Path.Combine(dir.FullName, "tiny.safetensors");
            using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
            ClipLoader.Save(model, path);
            Assert.That(dir.GetFiles().Select(f => f.Name), Is.EqualTo(new[] { "tiny.safetensors" }), "no temporary file is left");
            // Heads come back from the file's metadata: no options needed.
            using var reloaded = ClipLoader.Load(path, new ClipLoadOptions { Tokenizer = Fixture.TinyTokenizer.Value });
            Assert.That(reloaded.Config.ResolvedVisionHeads, Is.EqualTo(2));
            AssertMatchesReference(reloaded);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Test]
    public void ZeroShotThroughPublicApiGivesReferenceLogits()
    {
        using var scope = NewDisposeScope();
        using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        var meta = Fixture.ReferenceMetadata;
        var classNames = System.Text.Json.JsonSerializer.Deserialize<string[]>(meta["class_names"])!;
        var templates = System.Text.Json.JsonSerializer.Deserialize<string[]>(meta["templates"])!;
        Assert.That(Fixture.Same(model.Tokenize(classNames.Select(c => $"a photo of a {c}.").ToList()), Fixture.Reference["zero_shot_ids"]), Is.True,
            "the tiny tokenizer gives the reference ids");
        var classFeatures = model.ClassTextFeatures(classNames, templates);
        Fixture.AssertClose(classFeatures, Fixture.Reference["zero_shot_class_features"], Tolerance, "class text features");
        var logits = model.ZeroShotLogits(Fixture.Reference["images"], classFeatures);
        Fixture.AssertClose(logits, Fixture.Reference["zero_shot_logits"], 1e-4, "zero-shot logits");
    }
}
