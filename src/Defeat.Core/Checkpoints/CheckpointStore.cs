using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Defeat.Checkpoints;

/// <summary>
/// Per-epoch checkpoints in one folder: <c>epoch-0003.safetensors</c> (tensors) and
/// <c>epoch-0003.json</c> (metadata plus the SHA-256 of the tensor file).
/// </summary>
/// <remarks>
/// Each file is written under a temporary name and renamed into place, and the JSON file is
/// written last and names the hash of its tensor file, so a pair is valid only if both writes
/// completed. Writing epoch N never touches the files of earlier epochs: a crash or a kill at
/// any point leaves the previous good checkpoint loadable. Older pairs beyond
/// <see cref="Keep"/> are deleted only after a new pair is complete.
/// <para>Several writers may share a folder (threads or processes). Each writes its files under its
/// own temporary names (process id and a GUID) and records the hash of the bytes it wrote; only the
/// short commit (the two renames and the pruning) is serialised, by an in-process lock and an
/// exclusive lock on the file <see cref="LockFileName"/>, so the folder always ends with one
/// complete pair from one writer. The lock file stays in the folder.</para>
/// <para>Loading trusts nothing in the metadata file: a field of the wrong JSON type, an epoch other
/// than the file's, or a tensor path that is not a plain file name in this folder (absolute, with a
/// folder part or <c>..</c>, or a symbolic link) makes that checkpoint invalid, and
/// <see cref="LoadLatest"/> falls back to the previous one and says why.</para>
/// </remarks>
public sealed class CheckpointStore
{
    /// <summary>The file in the folder whose exclusive lock serialises commits of concurrent writers.</summary>
    public const string LockFileName = ".checkpoint-store.lock";

    private const string Prefix = "epoch-";
    private const int FormatVersion = 1;
    private static readonly TimeSpan LockTimeout = TimeSpan.FromMinutes(2);
    private static readonly ConcurrentDictionary<string, object> ProcessLocks = new(StringComparer.Ordinal);
    private readonly ILogger _logger;

    /// <summary>Opens (and creates) the folder.</summary>
    /// <param name="directory">Where the checkpoints live.</param>
    /// <param name="keep">How many of the newest complete checkpoints to keep (at least 1).</param>
    /// <param name="logger">Receives a warning for each checkpoint <see cref="LoadLatest"/> passes over, with the reason.</param>
    public CheckpointStore(string directory, int keep = 2, ILogger<CheckpointStore>? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentOutOfRangeException.ThrowIfLessThan(keep, 1);
        Directory = System.IO.Directory.CreateDirectory(directory).FullName;
        Keep = keep;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The folder holding the checkpoints.</summary>
    public string Directory { get; }

    /// <summary>How many of the newest complete checkpoints are kept.</summary>
    public int Keep { get; }

    /// <summary>Writes the checkpoint of <paramref name="epoch"/> atomically and prunes old ones.</summary>
    /// <returns>The path of the JSON file.</returns>
    public string Save(int epoch, IReadOnlyDictionary<string, Tensor> tensors, JsonObject metadata)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(epoch, 0);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(metadata);

        string stem = Path.Combine(Directory, Prefix + epoch.ToString("D4", CultureInfo.InvariantCulture));
        string tensorPath = stem + ".safetensors", jsonPath = stem + ".json";
        string tensorTemp = TemporaryName(tensorPath), jsonTemp = TemporaryName(jsonPath);
        try
        {
            using (var scope = NewDisposeScope())
            {
                var cpu = tensors.ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().contiguous());
                Safetensors.SaveStateDict(tensorTemp, cpu);
            }

            // The hash of this writer's own bytes: its temporary file is touched by no one else.
            var envelope = new JsonObject
            {
                ["format"] = FormatVersion,
                ["epoch"] = epoch,
                ["tensors"] = Path.GetFileName(tensorPath),
                ["sha256"] = Sha256(tensorTemp),
                ["metadata"] = metadata.DeepClone(),
            };
            string json;
            try { json = envelope.ToJsonString(new JsonSerializerOptions { WriteIndented = true }); }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"metadata cannot be written as JSON (a NaN or infinite number?): {e.Message}", nameof(metadata), e);
            }
            File.WriteAllText(jsonTemp, json);

            // Tensors first, metadata last: between the two renames the old metadata does not match the new
            // tensors, so a reader falls back rather than mixing two writers' files.
            using (Lock())
            {
                File.Move(tensorTemp, tensorPath, overwrite: true);
                File.Move(jsonTemp, jsonPath, overwrite: true);
                Prune();
            }
        }
        finally
        {
            if (File.Exists(tensorTemp)) File.Delete(tensorTemp);
            if (File.Exists(jsonTemp)) File.Delete(jsonTemp);
        }
        return jsonPath;
    }

    /// <summary>Epochs that have a metadata file, newest first (not yet verified).</summary>
    public IReadOnlyList<int> Epochs() =>
        System.IO.Directory.EnumerateFiles(Directory, Prefix + "*.json")
            .Select(p => Path.GetFileNameWithoutExtension(p)[Prefix.Length..])
            .Select(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var e) ? e : -1)
            .Where(e => e >= 0).OrderByDescending(e => e).ToList();

    /// <summary>Loads the newest checkpoint that verifies; null when there is none.</summary>
    /// <param name="skipped">Receives the reasons newer, broken checkpoints were passed over.</param>
    public Checkpoint? LoadLatest(ICollection<string>? skipped = null)
    {
        foreach (var epoch in Epochs())
        {
            try { return Load(epoch); }
            catch (CheckpointException e)
            {
                _logger.LogWarning("Skipping checkpoint of epoch {Epoch}: {Reason}", epoch, e.Message);
                skipped?.Add(e.Message);
            }
        }
        return null;
    }

    /// <summary>Loads and verifies the checkpoint of <paramref name="epoch"/>.</summary>
    /// <exception cref="CheckpointException">Missing, truncated or corrupted files, a hash mismatch, metadata that is
    /// malformed (a field missing or of the wrong JSON type, another epoch than the file's) or a tensor path that
    /// leaves the folder.</exception>
    public Checkpoint Load(int epoch)
    {
        string stem = Path.Combine(Directory, Prefix + epoch.ToString("D4", CultureInfo.InvariantCulture));
        string jsonPath = stem + ".json";
        if (!File.Exists(jsonPath))
            throw new CheckpointException($"{jsonPath}: no checkpoint for epoch {epoch}.");
        var envelope = ReadEnvelope(jsonPath, epoch);
        string tensorPath = Path.Combine(Directory, envelope.Tensors);
        string actual;
        try
        {
            if (new FileInfo(tensorPath).LinkTarget is { } target)
                throw new CheckpointException($"{jsonPath}: its tensor file {tensorPath} is a symbolic link (to {target}); " +
                    "expected a regular file inside the checkpoint folder, as the store writes.");
            if (!File.Exists(tensorPath))
                throw new CheckpointException($"{jsonPath}: its tensor file {tensorPath} is missing.");
            actual = Sha256(tensorPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"{tensorPath}: cannot be read: {e.Message}", e);
        }
        if (!string.Equals(envelope.Sha256, actual, StringComparison.Ordinal))
            throw new CheckpointException($"{tensorPath}: SHA-256 {actual} does not match {envelope.Sha256} recorded in {jsonPath} (truncated or corrupted).");

        Dictionary<string, Tensor> tensors;
        try { tensors = Safetensors.LoadStateDict(tensorPath); }
        catch (Exception e) when (e is not CheckpointException)
        {
            throw new CheckpointException($"{tensorPath}: not a readable safetensors file: {e.Message}", e);
        }
        return new Checkpoint(epoch, tensors, envelope.Metadata, tensorPath);
    }

    private sealed record Envelope(string Tensors, string Sha256, JsonObject Metadata);

    // Every field is checked for its JSON type before it is read: System.Text.Json's GetValue throws
    // InvalidOperationException on a type mismatch, which LoadLatest would not treat as a broken checkpoint.
    private static Envelope ReadEnvelope(string jsonPath, int epoch)
    {
        JsonObject envelope;
        try
        {
            envelope = JsonNode.Parse(File.ReadAllText(jsonPath)) as JsonObject
                       ?? throw new CheckpointException($"{jsonPath}: expected a JSON object {{\"format\", \"epoch\", \"tensors\", \"sha256\", \"metadata\"}}.");
            // A duplicated key surfaces only when the object is first enumerated.
            _ = envelope.Count;
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{jsonPath}: not valid JSON (truncated or corrupted): {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
        {
            throw new CheckpointException($"{jsonPath}: cannot be read as checkpoint metadata: {e.Message}", e);
        }

        int format = Integer(envelope, "format", jsonPath, "the format version");
        if (format != FormatVersion)
            throw new CheckpointException($"{jsonPath}: format {format}; expected {FormatVersion}.");
        int recorded = Integer(envelope, "epoch", jsonPath, $"the epoch of this file ({epoch})");
        if (recorded != epoch)
            throw new CheckpointException($"{jsonPath}: \"epoch\" is {recorded}; expected {epoch}, the epoch in the file's name.");

        string tensors = Text(envelope, "tensors", jsonPath, "the tensor file's name");
        if (tensors.Length == 0 || tensors is "." or ".." || Path.IsPathRooted(tensors) || Path.GetFileName(tensors) != tensors
            || tensors.Contains('/') || tensors.Contains('\\') || tensors.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0)
            throw new CheckpointException($"{jsonPath}: \"tensors\" is \"{tensors}\"; expected the plain name of a file inside the checkpoint folder (no folder part, no ..).");
        string sha = Text(envelope, "sha256", jsonPath, "a SHA-256 in hex");
        if (envelope["metadata"] is not JsonObject metadata)
            throw new CheckpointException($"{jsonPath}: \"metadata\" is {Describe(envelope, "metadata")}; expected a JSON object.");
        return new Envelope(tensors, sha, (JsonObject)metadata.DeepClone());
    }

    private static int Integer(JsonObject envelope, string key, string jsonPath, string what)
    {
        if (envelope[key] is JsonValue value && value.GetValueKind() == JsonValueKind.Number && value.TryGetValue<int>(out var result))
            return result;
        throw new CheckpointException($"{jsonPath}: \"{key}\" is {Describe(envelope, key)}; expected an integer ({what}).");
    }

    private static string Text(JsonObject envelope, string key, string jsonPath, string what)
    {
        if (envelope[key] is JsonValue value && value.GetValueKind() == JsonValueKind.String)
            return value.GetValue<string>();
        throw new CheckpointException($"{jsonPath}: \"{key}\" is {Describe(envelope, key)}; expected a string ({what}).");
    }

    private static string Describe(JsonObject envelope, string key)
    {
        if (!envelope.TryGetPropertyValue(key, out var node)) return "missing";
        if (node is null) return "null";
        string json = node.ToJsonString();
        return $"a JSON {node.GetValueKind().ToString().ToLowerInvariant()} {(json.Length <= 40 ? json : json[..37] + "...")}";
    }

    private void Prune()
    {
        foreach (var epoch in Epochs().Skip(Keep))
        {
            string stem = Path.Combine(Directory, Prefix + epoch.ToString("D4", CultureInfo.InvariantCulture));
            File.Delete(stem + ".json"); // metadata first: a half-pruned pair is simply invalid
            File.Delete(stem + ".safetensors");
        }
    }

    // Unique per writer: two threads of one process must not share a temporary file.
    private static string TemporaryName(string path) =>
        $"{path}.tmp-{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}-{Guid.NewGuid():N}";

    // The in-process lock orders this process's threads; the file lock (an exclusive open, which .NET maps to
    // flock on Unix and a sharing violation on Windows) orders processes. The kernel releases a dead process's lock.
    private Commit Lock()
    {
        var gate = ProcessLocks.GetOrAdd(Directory, _ => new object());
        Monitor.Enter(gate);
        try
        {
            string path = Path.Combine(Directory, LockFileName);
            var clock = Stopwatch.StartNew();
            for (int attempt = 0; ; attempt++)
            {
                try
                {
                    return new Commit(gate, new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
                }
                catch (IOException) when (clock.Elapsed < LockTimeout)
                {
                    Thread.Sleep(Math.Min(5 * (attempt + 1), 100));
                }
                catch (IOException e)
                {
                    throw new CheckpointException($"{path}: another writer has held the checkpoint folder's lock for {LockTimeout.TotalSeconds:0} s; " +
                        "expected it to be released (is another process stuck while saving into this folder?).", e);
                }
            }
        }
        catch
        {
            Monitor.Exit(gate);
            throw;
        }
    }

    private sealed class Commit(object gate, FileStream file) : IDisposable
    {
        public void Dispose()
        {
            file.Dispose();
            Monitor.Exit(gate);
        }
    }

    private static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
    }
}
