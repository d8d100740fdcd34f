using Defeat.Clip.Loading;

namespace Defeat.Tests.Clip;

/// <summary>Every way a checkpoint can be wrong gives one <see cref="ClipCheckpointException"/> that says what and where.</summary>
public class LoaderErrorTests
{
    private DirectoryInfo _dir = null!;

    [SetUp]
    public void CreateDir() => _dir = Directory.CreateTempSubdirectory("defeat-clip-err-");

    [TearDown]
    public void DeleteDir() => _dir.Delete(recursive: true);

    private string Temp(string name) => Path.Combine(_dir.FullName, name);

    private string Truncated(string fixture, double fraction)
    {
        var bytes = File.ReadAllBytes(Fixture.File(fixture));
        var path = Temp("truncated-" + fixture);
        File.WriteAllBytes(path, bytes[..(int)(bytes.Length * fraction)]);
        return path;
    }

    [Test]
    public void MissingUnexpectedAndMisShapedKeysAreListedInOneError()
    {
        using var scope = NewDisposeScope();
        var tensors = ClipLoader.ReadStateDict(Fixture.File("tiny_openai.pt"));
        tensors.Remove("visual.ln_post.bias");
        tensors.Remove("transformer.resblocks.1.mlp.c_fc.weight");
        tensors["visual.extra_head.weight"] = zeros(3, 4);
        tensors["ln_final.bias"] = zeros(31);
        tensors["visual.transformer.resblocks.0.attn.in_proj_weight"] = zeros(96, 31);
        var path = Temp("bad-keys.safetensors");
        SafetensorsFile.Write(path, tensors);

        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(path, Fixture.TinyOptions))!;
        Assert.That(e.Problems, Has.Count.EqualTo(5));
        Assert.That(e.Message, Does.Contain("5 problems"));
        Assert.That(e.Message, Does.Contain("missing key 'visual.ln_post.bias': expected shape [32]"));
        Assert.That(e.Message, Does.Contain("missing key 'transformer.resblocks.1.mlp.c_fc.weight': expected shape [128, 32]"));
        Assert.That(e.Message, Does.Contain("unexpected key 'visual.extra_head.weight': found shape [3, 4]"));
        Assert.That(e.Message, Does.Contain("wrong shape for 'ln_final.bias': expected [32], found [31]"));
        Assert.That(e.Message, Does.Contain("wrong shape for 'visual.transformer.resblocks.0.attn.in_proj_weight': expected [96, 32], found [96, 31]"));
        Assert.That(e.Path, Is.EqualTo(path));
    }

    [Test]
    public void ImageTowerOfTheWrongSizeIsReportedAndNothingChanges()
    {
        using var scope = NewDisposeScope();
        using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        var before = model.Visual.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var tower = ClipLoader.ReadStateDict(Fixture.File("tiny_tecoa.pt"));
        tower["vision_encoder_state_dict.proj"] = zeros(32, 8);
        var path = Temp("tower.safetensors");
        SafetensorsFile.Write(path, tower);
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.LoadImageTower(model, path))!;
        Assert.That(e.Message, Does.Contain("wrong shape for 'proj': expected [32, 16], found [32, 8]"));
        foreach (var (k, v) in model.Visual.state_dict())
            Assert.That(Fixture.Same(v, before[k]), Is.True, $"{k} unchanged after a failed load");
    }

    [TestCase("text")]
    [TestCase("png")]
    [TestCase("empty")]
    public void FileOfTheWrongKindIsRejected(string kind)
    {
        var path = Temp("wrong." + kind);
        switch (kind)
        {
            case "text": File.WriteAllText(path, "this is not a checkpoint\n"); break;
            case "png": File.Copy(Fixture.File("preprocess_input.png"), path); break;
            default: File.WriteAllBytes(path, []); break;
        }
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(path))!;
        Assert.That(e.Message, Does.Contain("not a CLIP checkpoint").And.Contain(path));
    }

    [Test]
    public void LegacyPickleIsRejectedWithAHint()
    {
        var path = Temp("legacy.pt");
        File.WriteAllBytes(path, [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(path))!;
        Assert.That(e.Message, Does.Contain("legacy"));
    }

    [TestCase("tiny_openai.pt", 0.5)]
    [TestCase("tiny_openai.pt", 0.999)]
    [TestCase("tiny_torchscript.pt", 0.5)]
    [TestCase("tiny_hf.safetensors", 0.5)]
    [TestCase("tiny_hf.safetensors", 0.001)]
    public void TruncatedFileIsRejected(string fixture, double fraction)
    {
        var path = Truncated(fixture, fraction);
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(path, Fixture.TinyOptions with { AllowTorchScript = true }))!;
        Assert.That(e.Message, Does.Contain("truncated").Or.Contain("damaged"));
        Assert.That(e.Message, Does.Contain(path));
    }

    [Test]
    public void ResNetWeightsAreOutOfScope()
    {
        using var scope = NewDisposeScope();
        var path = Temp("rn50.safetensors");
        SafetensorsFile.Write(path, new Dictionary<string, Tensor>
        {
            ["visual.layer1.0.conv1.weight"] = zeros(4, 4, 1, 1),
            ["visual.attnpool.positional_embedding"] = zeros(50, 8),
            ["text_projection"] = zeros(8, 4),
        });
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(path))!;
        Assert.That(e.Message, Does.Contain("ResNet").And.Contain("Vision Transformer"));
    }

    [Test]
    public void ImageTowerAloneGivenToLoadPointsToLoadImageTower()
    {
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(Fixture.File("tiny_tecoa.pt")))!;
        Assert.That(e.Message, Does.Contain("LoadImageTower"));
    }

    [Test]
    public void MissingFileIsFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => ClipLoader.Load(Temp("nope.pt")));
    }

    [Test]
    public void HuggingFaceFileWithoutAValueProjectionIsReported()
    {
        using var scope = NewDisposeScope();
        var (tensors, _) = SafetensorsFile.Read(Fixture.File("tiny_hf.safetensors"));
        tensors.Remove("text_model.encoder.layers.1.self_attn.v_proj.weight");
        var path = Temp("hf-no-v.safetensors");
        SafetensorsFile.Write(path, tensors);
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(path, Fixture.TinyOptions))!;
        Assert.That(e.Message, Does.Contain("missing key 'transformer.resblocks.1.attn.in_proj_weight': expected shape [96, 32]"));
        Assert.That(e.Message, Does.Contain("q_proj only").And.Contain("k_proj only"));
    }
}
