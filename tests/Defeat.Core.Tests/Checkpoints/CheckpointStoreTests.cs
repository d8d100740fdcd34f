using System.Text.Json.Nodes;
using Defeat.Checkpoints;

namespace Defeat.Tests.Checkpoints;

public class CheckpointStoreTests
{
    private string _dir = "";

    [SetUp]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("defeat-ckpt-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    private static Dictionary<string, Tensor> State(int seed)
    {
        var g = new Generator((ulong)seed);
        return new()
        {
            ["ctx"] = randn([4, 8], generator: g),
            ["vq.embedding.weight"] = rand([16, 3], dtype: ScalarType.Float64, generator: g),
            ["step"] = tensor(new long[] { seed }),
        };
    }

    [Test]
    public void RoundTripIsBitExactWithMetadata()
    {
        var store = new CheckpointStore(_dir);
        var state = State(3);
        store.Save(1, state, new JsonObject { ["seed"] = 42, ["classes"] = new JsonArray("a", "b") });
        using var loaded = store.LoadLatest()!;
        Assert.That(loaded.Epoch, Is.EqualTo(1));
        foreach (var (key, value) in state)
        {
            Assert.That(loaded.Tensors[key].dtype, Is.EqualTo(value.dtype), key);
            Assert.That(loaded.Tensors[key].bytes.ToArray(), Is.EqualTo(value.bytes.ToArray()), key);
        }
        Assert.That(loaded.Metadata["seed"]!.GetValue<int>(), Is.EqualTo(42));
        Assert.That(loaded.Metadata["classes"]!.AsArray().Select(n => n!.GetValue<string>()), Is.EqualTo(new[] { "a", "b" }));
    }

    [Test]
    public void TruncatedNewestFallsBackToThePreviousGoodOne()
    {
        var store = new CheckpointStore(_dir);
        store.Save(1, State(1), []);
        store.Save(2, State(2), []);
        var newest = Path.Combine(_dir, "epoch-0002.safetensors");
        var bytes = File.ReadAllBytes(newest);
        File.WriteAllBytes(newest, bytes[..(bytes.Length - 7)]); // as if the writer died mid-file

        var skipped = new List<string>();
        using var loaded = store.LoadLatest(skipped)!;
        Assert.That(loaded.Epoch, Is.EqualTo(1));
        Assert.That(loaded.Tensors["step"].item<long>(), Is.EqualTo(1));
        Assert.That(skipped.Single(), Does.Contain("epoch-0002.safetensors").And.Contain("does not match"));
        Assert.That(Assert.Throws<CheckpointException>(() => store.Load(2))!.Message, Does.Contain("truncated or corrupted"));
    }

    [Test]
    public void TensorFileWithoutItsMetadataIsIgnored()
    {
        // A kill after the tensor file was renamed but before the JSON was written.
        var store = new CheckpointStore(_dir);
        store.Save(1, State(1), []);
        File.Copy(Path.Combine(_dir, "epoch-0001.safetensors"), Path.Combine(_dir, "epoch-0002.safetensors"));
        File.WriteAllText(Path.Combine(_dir, "epoch-0003.json.tmp-1"), "{ half");
        using var loaded = store.LoadLatest()!;
        Assert.That(loaded.Epoch, Is.EqualTo(1));
    }

    [Test]
    public void CorruptedMetadataAndMissingFilesAreClearErrors()
    {
        var store = new CheckpointStore(_dir);
        store.Save(1, State(1), []);
        File.WriteAllText(Path.Combine(_dir, "epoch-0001.json"), "{\"format\": 1, \"epo");
        Assert.That(Assert.Throws<CheckpointException>(() => store.Load(1))!.Message, Does.Contain("not valid JSON"));
        Assert.That(store.LoadLatest(), Is.Null);
        Assert.That(Assert.Throws<CheckpointException>(() => store.Load(7))!.Message, Does.Contain("no checkpoint for epoch 7"));
    }

    [Test]
    public void KeepsOnlyTheNewestCheckpoints()
    {
        var store = new CheckpointStore(_dir, keep: 2);
        for (int e = 1; e <= 4; e++) store.Save(e, State(e), []);
        Assert.That(store.Epochs(), Is.EqualTo(new[] { 4, 3 }));
        Assert.That(Directory.GetFiles(_dir, "epoch-*"), Has.Length.EqualTo(4));
        Assert.That(Directory.GetFiles(_dir).Select(Path.GetFileName).ToArray(), Does.Contain(CheckpointStore.LockFileName).And.Length.EqualTo(5),
            "the four checkpoint files and the lock file");
    }
}
