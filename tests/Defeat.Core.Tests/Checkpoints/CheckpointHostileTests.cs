using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Defeat.Attacks;
using Defeat.Checkpoints;
using Defeat.Data;
using Defeat.Tests.Training;
using Defeat.Training;
using Microsoft.Extensions.Logging;

namespace Defeat.Tests.Checkpoints;

/// <summary>Metadata written by hand or by another tool, several writers at once, and tensor paths that point out of the
/// folder: the store falls back to the previous good epoch, names what was wrong and never reads outside its folder.</summary>
public class CheckpointHostileTests
{
    private string _root = "";
    private string _dir = "";

    [SetUp]
    public void CreateFolder()
    {
        _root = Directory.CreateTempSubdirectory("defeat-ckpt-hostile-").FullName;
        _dir = Directory.CreateDirectory(Path.Combine(_root, "store")).FullName;
    }

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_root, recursive: true);

    private static Dictionary<string, Tensor> State(int seed)
    {
        var g = new Generator((ulong)seed);
        return new()
        {
            ["ctx"] = randn([4, 8], generator: g),
            ["step"] = tensor(new long[] { seed }),
        };
    }

    private string JsonFile(int epoch) => Path.Combine(_dir, $"epoch-{epoch:D4}.json");

    private string TensorFile(int epoch) => Path.Combine(_dir, $"epoch-{epoch:D4}.safetensors");

    private static string Sha256(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path))).ToLowerInvariant();

    private sealed class ListLogger : ILogger<CheckpointStore>
    {
        public List<(LogLevel Level, string Message)> Entries { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Entries) Entries.Add((logLevel, formatter(state, exception)));
        }
    }

    [Test]
    public void AnyMalformedMetadataFallsBackToThePreviousEpochAndSaysWhy()
    {
        var logger = new ListLogger();
        var store = new CheckpointStore(_dir, keep: 5, logger: logger);
        store.Save(1, State(1), new JsonObject { ["note"] = "one" });
        store.Save(2, State(2), new JsonObject { ["note"] = "two" });
        string good = File.ReadAllText(JsonFile(2));
        string hash = Sha256(TensorFile(2));

        // Each case: a change to epoch 2's envelope, and a word the reason must contain (the field at fault).
        var cases = new (string Name, Action<JsonObject> Edit, string Field)[]
        {
            ("format as a string", e => e["format"] = "1", "format"),
            ("format fractional", e => e["format"] = 1.5, "format"),
            ("format null", e => e["format"] = null, "format"),
            ("format missing", e => e.Remove("format"), "format"),
            ("epoch as a string", e => e["epoch"] = "x", "epoch"),
            ("epoch negative", e => e["epoch"] = -3, "epoch"),
            ("epoch beyond int", e => e["epoch"] = 99999999999L, "epoch"),
            ("epoch of another file", e => e["epoch"] = 7, "epoch"),
            ("epoch fractional", e => e["epoch"] = 2.5, "epoch"),
            ("epoch missing", e => e.Remove("epoch"), "epoch"),
            ("sha256 as a number", e => e["sha256"] = 5, "sha256"),
            ("sha256 as an array", e => e["sha256"] = new JsonArray(hash), "sha256"),
            ("sha256 missing", e => e.Remove("sha256"), "sha256"),
            ("tensors as a number", e => e["tensors"] = 5, "tensors"),
            ("tensors as an object", e => e["tensors"] = new JsonObject { ["path"] = "epoch-0002.safetensors" }, "tensors"),
            ("tensors missing", e => e.Remove("tensors"), "tensors"),
            ("tensors empty", e => e["tensors"] = "", "tensors"),
            ("metadata as a string", e => e["metadata"] = "two", "metadata"),
            ("metadata missing", e => e.Remove("metadata"), "metadata"),
        };
        foreach (var (name, edit, field) in cases)
        {
            var envelope = JsonNode.Parse(good)!.AsObject();
            edit(envelope);
            File.WriteAllText(JsonFile(2), envelope.ToJsonString());
            AssertFallsBack(store, name, field);
        }

        // Not an object at all, and an object with a duplicated key.
        File.WriteAllText(JsonFile(2), "[1, 2]");
        AssertFallsBack(store, "an array", "JSON object");
        File.WriteAllText(JsonFile(2), good.Replace("\"format\": 1,", "\"format\": 1, \"format\": 1,", StringComparison.Ordinal));
        AssertFallsBack(store, "a duplicated key", "epoch-0002.json");

        Assert.That(logger.Entries.Count(e => e.Level == LogLevel.Warning && e.Message.Contains("epoch-0002.json", StringComparison.Ordinal)),
            Is.EqualTo(cases.Length + 2), "one warning per skipped checkpoint");

        File.WriteAllText(JsonFile(2), good);
        using var restored = store.LoadLatest()!;
        Assert.That(restored.Epoch, Is.EqualTo(2));
    }

    private void AssertFallsBack(CheckpointStore store, string name, string field)
    {
        var e = Assert.Throws<CheckpointException>(() => store.Load(2), name)!;
        Assert.That(e.Message, Does.Contain("epoch-0002.json").And.Contain(field), name);
        var skipped = new List<string>();
        using var loaded = store.LoadLatest(skipped);
        Assert.That(loaded, Is.Not.Null, name);
        Assert.That(loaded!.Epoch, Is.EqualTo(1), name);
        Assert.That(loaded.Tensors["step"].item<long>(), Is.EqualTo(1), name);
        Assert.That(loaded.Metadata["note"]!.GetValue<string>(), Is.EqualTo("one"), name);
        Assert.That(skipped, Has.Count.EqualTo(1), name);
        Assert.That(skipped[0], Does.Contain(field), name);
    }

    [Test]
    public void EightWritersOfOneEpochEndWithOneCompleteConsistentCheckpoint()
    {
        const int writers = 8;
        var store = new CheckpointStore(_dir);
        var states = Enumerable.Range(0, writers).Select(i => State(100 + i)).ToArray();
        for (int round = 0; round < 5; round++)
        {
            using var start = new Barrier(writers);
            var errors = new List<Exception>();
            var threads = Enumerable.Range(0, writers).Select(i => new Thread(() =>
            {
                try
                {
                    start.SignalAndWait();
                    store.Save(3, states[i], new JsonObject { ["writer"] = i });
                }
                catch (Exception e)
                {
                    lock (errors) errors.Add(e);
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.That(errors, Is.Empty, $"round {round}: {string.Join(" | ", errors.Select(e => e.Message))}");

            var skipped = new List<string>();
            using var loaded = store.LoadLatest(skipped)!;
            Assert.That(skipped, Is.Empty, $"round {round}");
            Assert.That(loaded, Is.Not.Null);
            Assert.That(loaded.Epoch, Is.EqualTo(3));
            int writer = loaded.Metadata["writer"]!.GetValue<int>();
            foreach (var (key, value) in states[writer])
                Assert.That(loaded.Tensors[key].bytes.ToArray(), Is.EqualTo(value.bytes.ToArray()), $"round {round}: {key} of writer {writer}");
            Assert.That(Directory.GetFiles(_dir, "epoch-*").Select(Path.GetFileName),
                Is.EquivalentTo(new[] { "epoch-0003.json", "epoch-0003.safetensors" }), $"round {round}: no temporary file is left");
        }
    }

    [Test]
    public void TheTensorsPathMustStayInsideTheFolder()
    {
        var store = new CheckpointStore(_dir, keep: 5);
        store.Save(1, State(1), []);
        store.Save(2, State(2), []);
        // A file outside the folder, with the hash the envelope will record: only the path check can refuse it.
        string outside = Path.Combine(_root, "outside.safetensors");
        File.Copy(TensorFile(2), outside);
        var good = JsonNode.Parse(File.ReadAllText(JsonFile(2)))!.AsObject();

        foreach (var (name, value) in new[]
                 {
                     ("parent", "../outside.safetensors"),
                     ("absolute", outside),
                     ("sub-folder", "sub/epoch-0002.safetensors"),
                     ("dot-dot", ".."),
                 })
        {
            if (name == "sub-folder")
            {
                Directory.CreateDirectory(Path.Combine(_dir, "sub"));
                File.Copy(TensorFile(2), Path.Combine(_dir, "sub", "epoch-0002.safetensors"), overwrite: true);
            }
            var envelope = good.DeepClone().AsObject();
            envelope["tensors"] = value;
            File.WriteAllText(JsonFile(2), envelope.ToJsonString());
            var e = Assert.Throws<CheckpointException>(() => store.Load(2), name)!;
            Assert.That(e.Message, Does.Contain("tensors").And.Contain("inside"), name);
            using var loaded = store.LoadLatest();
            Assert.That(loaded!.Epoch, Is.EqualTo(1), name);
        }

        // The right name, but the file is a link to the outside one (same bytes, same hash).
        File.WriteAllText(JsonFile(2), good.ToJsonString());
        File.Delete(TensorFile(2));
        File.CreateSymbolicLink(TensorFile(2), outside);
        var link = Assert.Throws<CheckpointException>(() => store.Load(2))!;
        Assert.That(link.Message, Does.Contain("symbolic link"));
        using (var loaded = store.LoadLatest()) Assert.That(loaded!.Epoch, Is.EqualTo(1));
    }

    [Test]
    public void ATrainerSeedOfTheWrongTypeIsAClearErrorOnResume()
    {
        using var data = new LabeledImages(rand([4, 1, 4, 4], generator: new Generator(1)), tensor(new long[] { 0, 1, 0, 1 }), ["a", "b"]);
        using var model = new LinearClassifier(16, 2, seed: 3);
        var options = new DefeatTrainerOptions
        {
            Epochs = 2, BatchSize = 4, WarmupEpochs = 0, Seed = 5, CheckpointDirectory = _dir,
            Attack = PgdOptions.DefeatTraining(2.0 / 255) with { Steps = 1 },
        };
        new DefeatTrainer(options with { Epochs = 1 }).Train(model, data);
        var envelope = JsonNode.Parse(File.ReadAllText(JsonFile(1)))!.AsObject();
        envelope["metadata"]!["trainer"]!["seed"] = "5";
        File.WriteAllText(JsonFile(1), envelope.ToJsonString());
        var e = Assert.Throws<CheckpointException>(() => new DefeatTrainer(options).Train(model, data))!;
        Assert.That(e.Message, Does.Contain("trainer.seed").And.Contain("\"5\"").And.Contain("expected an integer"));
    }
}
