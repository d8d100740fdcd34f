using Defeat.Model;
using System.Text.Json.Nodes;
using Defeat.Attacks;
using Defeat.Checkpoints;
using Defeat.Data;
using Defeat.Prompting;
using Defeat.Tests.Fakes;
using Defeat.Training;

namespace Defeat.Tests.Checkpoints;

/// <summary>Interrupted writes, truncation at every part of a file, flipped bytes, another format version and
/// a model of another class count: the previous good checkpoint survives and every failure is a clear error.</summary>
public class CheckpointDamageTests
{
    private string _dir = "";

    [SetUp]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("defeat-ckpt-damage-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    private static Dictionary<string, Tensor> State(int seed)
    {
        var g = new Generator((ulong)seed);
        return new()
        {
            ["ctx"] = randn([4, 8], generator: g),
            ["codebook"] = rand([16, 3], dtype: ScalarType.Float64, generator: g),
            ["step"] = tensor(new long[] { seed }),
        };
    }

    private string TensorFile(int epoch) => Path.Combine(_dir, $"epoch-{epoch:D4}.safetensors");

    private string JsonFile(int epoch) => Path.Combine(_dir, $"epoch-{epoch:D4}.json");

    private static void AssertEpochOne(Checkpoint? loaded, Dictionary<string, Tensor> expected)
    {
        Assert.That(loaded, Is.Not.Null);
        Assert.That(loaded!.Epoch, Is.EqualTo(1));
        foreach (var (key, value) in expected)
            Assert.That(loaded.Tensors[key].bytes.ToArray(), Is.EqualTo(value.bytes.ToArray()), key);
    }

    [Test]
    public void TensorFileTruncatedAnywhereFallsBackToThePreviousCheckpoint()
    {
        var store = new CheckpointStore(_dir);
        var first = State(1);
        store.Save(1, first, []);
        store.Save(2, State(2), []);
        var good = File.ReadAllBytes(TensorFile(2));
        long headerLength = BitConverter.ToInt64(good, 0); // safetensors: u64 header length, JSON header, data
        int headerEnd = 8 + (int)headerLength;
        int[] offsets = [0, 1, 4, 7, 8, 8 + (int)headerLength / 2, headerEnd - 1, headerEnd, headerEnd + 1,
            (headerEnd + good.Length) / 2, good.Length - 8, good.Length - 1];
        foreach (var offset in offsets.Distinct())
        {
            File.WriteAllBytes(TensorFile(2), good[..offset]);
            var e = Assert.Throws<CheckpointException>(() => store.Load(2), $"cut at {offset}")!;
            Assert.That(e.Message, Does.Contain("epoch-0002.safetensors").And.Contain("truncated or corrupted"), $"cut at {offset}");
            var skipped = new List<string>();
            using var loaded = store.LoadLatest(skipped);
            AssertEpochOne(loaded, first);
            Assert.That(skipped, Has.Count.EqualTo(1), $"cut at {offset}");
        }
    }

    [Test]
    public void MetadataTruncatedAnywhereFallsBackToThePreviousCheckpoint()
    {
        var store = new CheckpointStore(_dir);
        var first = State(1);
        store.Save(1, first, new JsonObject { ["note"] = "one" });
        store.Save(2, State(2), new JsonObject { ["note"] = "two" });
        var good = File.ReadAllBytes(JsonFile(2));
        for (int offset = 0; offset < good.Length; offset += Math.Max(1, good.Length / 25))
        {
            File.WriteAllBytes(JsonFile(2), good[..offset]);
            var e = Assert.Throws<CheckpointException>(() => store.Load(2), $"cut at {offset}")!;
            Assert.That(e.Message, Does.Contain("epoch-0002.json"), $"cut at {offset}");
            using var loaded = store.LoadLatest();
            AssertEpochOne(loaded, first);
        }
    }

    [Test]
    public void AFlippedByteAnywhereIsCaughtByTheHash()
    {
        var store = new CheckpointStore(_dir);
        store.Save(1, State(1), []);
        var good = File.ReadAllBytes(TensorFile(1));
        foreach (var position in new[] { 3, 20, good.Length / 2, good.Length - 1 })
        {
            var bad = (byte[])good.Clone();
            bad[position] ^= 0x10;
            File.WriteAllBytes(TensorFile(1), bad);
            var e = Assert.Throws<CheckpointException>(() => store.Load(1))!;
            Assert.That(e.Message, Does.Contain("does not match"), $"byte {position}");
        }
        File.WriteAllBytes(TensorFile(1), good);
        using var restored = store.Load(1);
        Assert.That(restored.Tensors["step"].item<long>(), Is.EqualTo(1));
    }

    [Test]
    public void AnotherFormatVersionAndAHashedButUnreadableFileAreClearErrors()
    {
        var store = new CheckpointStore(_dir);
        store.Save(1, State(1), []);
        var envelope = JsonNode.Parse(File.ReadAllText(JsonFile(1)))!.AsObject();
        envelope["format"] = 2;
        File.WriteAllText(JsonFile(1), envelope.ToJsonString());
        Assert.That(Assert.Throws<CheckpointException>(() => store.Load(1))!.Message, Does.Contain("format 2; expected 1"));

        // A tensor file whose recorded hash matches but which is not safetensors (e.g. written by another tool).
        File.WriteAllBytes(TensorFile(1), "not a safetensors file"u8.ToArray());
        envelope["format"] = 1;
        envelope["sha256"] = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(TensorFile(1)))).ToLowerInvariant();
        File.WriteAllText(JsonFile(1), envelope.ToJsonString());
        Assert.That(Assert.Throws<CheckpointException>(() => store.Load(1))!.Message, Does.Contain("not a readable safetensors file"));
        Assert.That(store.LoadLatest(), Is.Null);
    }

    [Test]
    public void AWriteThatFailsHalfwayLeavesThePreviousCheckpointAndNoTemporaryFile()
    {
        var store = new CheckpointStore(_dir);
        var first = State(1);
        store.Save(1, first, []);
        // A stray temporary file from a writer killed earlier (same process id) must not block the next write.
        // Temporary names are unique per writer, so the store leaves it alone (it may be a live writer's).
        string stray = TensorFile(2) + ".tmp-" + Environment.ProcessId;
        File.WriteAllText(stray, "half a file");
        // A tensor the writer cannot serialise makes the write fail after it started: as if it were killed.
        var broken = new Dictionary<string, Tensor>(State(2)) { ["z"] = zeros([2], dtype: ScalarType.ComplexFloat32) };
        Assert.That(() => store.Save(2, broken, []), Throws.Exception);
        Assert.That(File.Exists(JsonFile(2)), Is.False);
        Assert.That(Directory.GetFiles(_dir, "*.tmp-*"), Is.EqualTo(new[] { stray }), "only the stray file; none of this writer's");
        Assert.That(File.ReadAllText(stray), Is.EqualTo("half a file"));
        using (var loaded = store.LoadLatest()) AssertEpochOne(loaded, first);

        store.Save(2, State(2), []);
        using var second = store.LoadLatest()!;
        Assert.That(second.Epoch, Is.EqualTo(2));
    }

    [Test]
    public void RoundTripIsBitExactForEveryDtypeAndSpecialValue()
    {
        var store = new CheckpointStore(_dir);
        var special = tensor(new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, -0f, float.Epsilon, 1e-40f, float.MaxValue });
        var state = new Dictionary<string, Tensor>
        {
            ["special"] = special,
            ["half"] = randn([3, 5]).to_type(ScalarType.Float16),
            ["bfloat"] = randn([3, 5]).to_type(ScalarType.BFloat16),
            ["double"] = randn([2, 2], dtype: ScalarType.Float64),
            ["int32"] = tensor(new[] { int.MinValue, -1, 0, int.MaxValue }),
            ["bytes"] = tensor(new byte[] { 0, 7, 255 }),
            ["flags"] = tensor(new[] { true, false, true }),
            ["transposed"] = randn([4, 3]).t(), // not contiguous
            ["scalar"] = tensor(3.5f),
        };
        store.Save(1, state, []);
        using var loaded = store.Load(1);
        Assert.That(loaded.Tensors.Keys, Is.EquivalentTo(state.Keys));
        foreach (var (key, value) in state)
        {
            Assert.That(loaded.Tensors[key].dtype, Is.EqualTo(value.dtype), key);
            Assert.That(loaded.Tensors[key].shape, Is.EqualTo(value.shape), key);
            Assert.That(loaded.Tensors[key].bytes.ToArray(), Is.EqualTo(value.contiguous().bytes.ToArray()), key);
        }
    }

    [Test]
    public void ResumingWithAModelOfAnotherClassCountNamesTheKeyAndTheShapes()
    {
        var backbone = new FakeBackbone(seed: 3);
        DefeatModel Build(string[] classes) => DefeatModel.Create(backbone, classes, new DefeatModelOptions { UseShield = false },
            new PromptLearnerOptions { ContextLength = 4, ClassSpecificContext = true, Seed = 1 });
        LabeledImages Data(string[] classes) => new(rand([4, 3, 12, 12], generator: new Generator(2)),
            tensor(new long[] { 0, 1, 0, 1 }), classes);
        var options = new DefeatTrainerOptions
        {
            Epochs = 2, WarmupEpochs = 0, BatchSize = 4, CheckpointDirectory = _dir, Attack = PgdOptions.DefeatTraining(2.0 / 255) with { Steps = 1 },
        };
        string[] two = ["cat", "dog"], three = ["cat", "dog", "bird"];
        using (var model = Build(two))
        using (var data = Data(two))
            new DefeatTrainer(options with { Epochs = 1 }).Train(model, data);

        using var other = Build(three);
        using var otherData = Data(three);
        var e = Assert.Throws<CheckpointException>(() => new DefeatTrainer(options).Train(other, otherData))!;
        Assert.That(e.Message, Does.Contain("epoch-0001.safetensors").And.Contain("prompt_learner.ctx")
            .And.Contain("expected [3, 4, 6]").And.Contain("found [2, 4, 6]"));
    }
}
