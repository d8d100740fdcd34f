using System.Text;
using Defeat.Clip.Loading;

namespace Defeat.Tests.Clip;

/// <summary>
/// Checkpoints made to hurt the loader (issue 11, items 2, 3 and 5): a TorchScript archive that writes a file when
/// loaded, pickles whose dicts contain themselves, nest 300,000 deep, share one dict 2**64 ways or hold five million
/// dicts, and weights that are NaN or infinite. The files come from Fixtures/make_hostile_fixtures.py (PyTorch 1.13).
/// </summary>
public class HostileCheckpointTests
{
    private const string Canary = "defeat_torchscript_canary.bin";
    private static readonly byte[] CanaryBytes = "ABCDEFGH"u8.ToArray();

    private DirectoryInfo _dir = null!;

    [SetUp]
    public void CreateDir() => _dir = Directory.CreateTempSubdirectory("defeat-clip-hostile-");

    [TearDown]
    public void DeleteDir() => _dir.Delete(recursive: true);

    private string Temp(string name) => Path.Combine(_dir.FullName, name);

    /// <summary>Runs <paramref name="action"/> in the temporary folder, beside a canary file the archive's code overwrites.</summary>
    private byte[] WithCanary(Action action)
    {
        File.WriteAllBytes(Temp(Canary), CanaryBytes);
        string previous = Environment.CurrentDirectory;
        Environment.CurrentDirectory = _dir.FullName;
        try
        {
            action();
        }
        finally
        {
            Environment.CurrentDirectory = previous;
        }
        return File.ReadAllBytes(Temp(Canary));
    }

    [Test]
    public void TorchScriptIsRefusedByDefaultAndItsCodeNeverRuns()
    {
        var path = Fixture.File("hostile_torchscript_setstate.pt");
        Assert.That(ClipLoader.DetectFormat(path), Is.EqualTo(CheckpointFormat.TorchScript));
        var errors = new List<ClipCheckpointException>();
        var canary = WithCanary(() =>
        {
            errors.Add(Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(path))!);
            errors.Add(Assert.Throws<ClipCheckpointException>(() => ClipLoader.ReadStateDict(path))!);
            using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
            errors.Add(Assert.Throws<ClipCheckpointException>(() => ClipLoader.LoadImageTower(model, path))!);
        });
        Assert.That(canary, Is.EqualTo(CanaryBytes), "the archive's __setstate__ must not have run");
        foreach (var e in errors)
        {
            Assert.That(e.Path, Is.EqualTo(path));
            Assert.That(e.Message, Does.Contain("TorchScript").And.Contain("program").And.Contain("runs"));
            Assert.That(e.Message, Does.Contain("AllowTorchScript"));
            // The conversion line names this file and writes a data-only state dict.
            Assert.That(e.Message, Does.Contain($"torch.save(torch.jit.load('{path}', map_location='cpu').state_dict()"));
        }
    }

    [Test]
    public void TorchScriptOptInRunsTheArchivesCode()
    {
        // The control of the test above: with the opt-in the same file does run its code, so the fixture is live.
        Dictionary<string, Tensor>? tensors = null;
        var canary = WithCanary(() => tensors = ClipLoader.ReadStateDict(Fixture.File("hostile_torchscript_setstate.pt"),
            new ClipLoadOptions { AllowTorchScript = true }));
        Assert.That(Encoding.ASCII.GetString(canary), Is.EqualTo("XXXXXXXX"));
        Assert.That(tensors!.Keys, Is.EqualTo(new[] { "weight" }));
        foreach (var t in tensors.Values) t.Dispose();
    }

    [Test]
    public void OptionsDefaultToTheSafeChoices()
    {
        var options = new ClipLoadOptions();
        Assert.That(options.AllowTorchScript, Is.False);
        Assert.That(options.AllowNonFiniteWeights, Is.False);
        Assert.That(options.MaxSafetensorsHeaderBytes, Is.EqualTo(16L << 20));
        Assert.That(options.MaxNestingDepth, Is.EqualTo(32));
        Assert.That(options.MaxPickleObjects, Is.EqualTo(250_000));
        Assert.That(options.MaxPickleBytes, Is.EqualTo(64L << 20));
        Assert.Throws<ArgumentOutOfRangeException>(() => (options with { MaxNestingDepth = 0 }).Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => (options with { MaxSafetensorsHeaderBytes = 0 }).Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => (options with { MaxPickleBytes = -1 }).Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => (options with { MaxPickleObjects = 0 }).Validate());
    }

    /// <summary>Loads a hostile pickle and returns the error and the managed bytes this thread allocated meanwhile.</summary>
    private static (ClipCheckpointException Error, long Allocated) LoadHostile(string fixture, ClipLoadOptions? options = null)
    {
        var path = Fixture.File(fixture);
        Assert.That(ClipLoader.DetectFormat(path), Is.EqualTo(CheckpointFormat.PyTorchPickle));
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(path, options))!;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        TestContext.Out.WriteLine($"{fixture}: {allocated / 1e6:F1} MB allocated; {e.Message}");
        Assert.That(e.Path, Is.EqualTo(path));
        return (e, allocated);
    }

    [Test]
    public void DictThatContainsItselfIsRefused()
    {
        // Before the fix: the flattening recursed forever (stack overflow, the test host died).
        var (e, allocated) = LoadHostile("hostile_cyclic_dict.pt");
        Assert.That(e.Message, Does.Contain("'self'").And.Contain("contains itself"));
        Assert.That(allocated, Is.LessThan(16L << 20));
    }

    [Test]
    public void DictsNested300000DeepAreRefusedBeforeTheyAreBuilt()
    {
        // Before the fix: stack overflow after growing to 4 GB. 300,000 dicts and keys are 600,000 values pushed,
        // over the default object limit: refused from the opcode stream alone.
        var (e, allocated) = LoadHostile("hostile_deep_dict.pt");
        Assert.That(e.Message, Does.Contain("more than 250000 objects"));
        Assert.That(allocated, Is.LessThan(32L << 20));
    }

    [Test]
    public void DictsNested300000DeepAreRefusedAtTheDepthLimitWhenBuilt()
    {
        // With the object limit raised the unpickler (iterative) builds all 300,000 dicts, about 150 MB; the
        // flattening, iterative too, stops at depth 33 and names the path.
        var (e, allocated) = LoadHostile("hostile_deep_dict.pt", new ClipLoadOptions { MaxPickleObjects = 1_000_000 });
        Assert.That(e.Message, Does.Contain("nested more than 32 deep"));
        Assert.That(e.Message, Does.Contain("'" + string.Join(".", Enumerable.Repeat("a", 32)) + "'"));
        Assert.That(allocated, Is.LessThan(512L << 20));
    }

    [Test]
    public void OneDictReachedTwiceIsRefused()
    {
        // 64 levels, each holding the next dict twice: 2**64 paths in a 1 KB file. Before the fix the flattening
        // walked them all (it never finished).
        var (e, allocated) = LoadHostile("hostile_shared_dicts.pt");
        Assert.That(e.Message, Does.Contain("reached twice").And.Contain("'a'").And.Contain("'b'"));
        Assert.That(allocated, Is.LessThan(16L << 20));
    }

    [Test]
    public void PickleThatBuildsMillionsOfObjectsIsRefusedBeforeAnyIsBuilt()
    {
        // 5,000,000 empty dicts from a 10 KB file. Before the fix they were all built (over a gigabyte) before the
        // loader found no tensors.
        var (e, allocated) = LoadHostile("hostile_pickle_bomb.pt");
        Assert.That(e.Message, Does.Contain("more than 250000 objects").And.Contain(nameof(ClipLoadOptions.MaxPickleObjects)));
        Assert.That(allocated, Is.LessThan(64L << 20));
    }

    [Test]
    public void WorstPickleUnderTheDefaultLimitsStaysBounded()
    {
        // The most a pickle may build under the defaults: 249,999 empty dicts (one push short of the limit) from a
        // few hundred bytes of zip. All are built; the load fails because there is no tensor.
        var path = Temp("worst.pt");
        using (var zip = System.IO.Compression.ZipFile.Open(path, System.IO.Compression.ZipArchiveMode.Create))
        using (var pickle = zip.CreateEntry("archive/data.pkl").Open())
        {
            pickle.Write([0x80, 0x02]);                                             // PROTO 2
            pickle.Write(Enumerable.Repeat((byte)'}', ClipLoadOptions.DefaultMaxPickleObjects - 1).ToArray());
            pickle.WriteByte((byte)'.');                                            // STOP
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(path))!;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        TestContext.Out.WriteLine($"worst.pt ({new FileInfo(path).Length} bytes): {allocated / 1e6:F1} MB allocated; {e.Message}");
        Assert.That(e.Message, Does.Contain("holds no tensors"));
        Assert.That(allocated, Is.LessThan(256L << 20));
    }

    [Test]
    public void TensorRecordLargerThanItsStorageIsRefused()
    {
        // A 874-byte file whose one tensor claims 20000 x 20000 float32 over a one-float storage. PyBridge reserves the
        // shape (untouched pages) and stops at the end of the storage's bytes; nothing is returned.
        var (e, allocated) = LoadHostile("hostile_shape_beyond_storage.pt");
        Assert.That(e.Message, Does.Contain("could not be read"));
        Assert.That(e.InnerException, Is.Not.Null);
        Assert.That(allocated, Is.LessThan(16L << 20));
    }

    [Test]
    public void PickleLimitsAreOptions()
    {
        var small = Fixture.TinyOptions with { MaxPickleBytes = 1000 };
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(Fixture.File("tiny_openai.pt"), small))!;
        Assert.That(e.Message, Does.Contain("more than 1000 bytes").And.Contain(nameof(ClipLoadOptions.MaxPickleBytes)));

        // TeCoA's file nests two deep ({"vision_encoder_state_dict": {...}}): a limit of 1 refuses it, 2 reads it.
        using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        var tecoa = Fixture.File("tiny_tecoa.pt");
        e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.LoadImageTower(model, tecoa, new ClipLoadOptions { MaxNestingDepth = 1 }))!;
        Assert.That(e.Message, Does.Contain("nested more than 1 deep").And.Contain("'vision_encoder_state_dict'"));
        Assert.DoesNotThrow(() => ClipLoader.LoadImageTower(model, tecoa, new ClipLoadOptions { MaxNestingDepth = 2 }));
    }

    /// <summary>The tiny model's weights with two NaNs and a +inf in visual.proj and a -inf in ln_final.bias.</summary>
    private string NonFiniteCheckpoint()
    {
        using var scope = NewDisposeScope();
        var tensors = ClipLoader.ReadStateDict(Fixture.File("tiny_openai.pt"));
        tensors["visual.proj"][0, 0] = double.NaN;
        tensors["visual.proj"][1, 1] = double.NaN;
        tensors["visual.proj"][2, 2] = double.PositiveInfinity;
        tensors["ln_final.bias"][3] = double.NegativeInfinity;
        var path = Temp("non-finite.safetensors");
        SafetensorsFile.Write(path, tensors);
        return path;
    }

    [Test]
    public void NonFiniteWeightsAreRefusedByDefaultWithEveryKeyAndCount()
    {
        var path = NonFiniteCheckpoint();
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(path, Fixture.TinyOptions))!;
        Assert.That(e.Problems, Is.EquivalentTo(new[]
        {
            "'ln_final.bias': 1 -inf of 32 values",
            "'visual.proj': 2 NaN, 1 +inf of 512 values",
        }));
        Assert.That(e.Message, Does.Contain(nameof(ClipLoadOptions.AllowNonFiniteWeights)).And.Contain(path));
        Assert.Throws<ClipCheckpointException>(() => ClipLoader.ReadStateDict(path));
        using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        Assert.Throws<ClipCheckpointException>(() => ClipLoader.LoadImageTower(model, path));
    }

    [Test]
    public void NonFiniteWeightsLoadWhenAllowed()
    {
        var path = NonFiniteCheckpoint();
        using var scope = NewDisposeScope();
        using var model = ClipLoader.Load(path, Fixture.TinyOptions with { AllowNonFiniteWeights = true });
        var proj = model.state_dict()["visual.proj"];
        Assert.That(double.IsNaN(proj[0, 0].item<float>()) && double.IsNaN(proj[1, 1].item<float>()), Is.True);
        Assert.That(proj[2, 2].item<float>(), Is.EqualTo(float.PositiveInfinity));
        Assert.That(model.state_dict()["ln_final.bias"][3].item<float>(), Is.EqualTo(float.NegativeInfinity));
        Assert.That(proj.isfinite().sum().item<long>(), Is.EqualTo(512 - 3));
    }
}
