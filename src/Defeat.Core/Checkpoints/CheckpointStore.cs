using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Defeat.Checkpoints;

/// <summary>
/// Per-epoch checkpoints in one folder: <c>epoch-0003.safetensors</c> (tensors) and
/// <c>epoch-0003.json</c> (metadata plus the SHA-256 of the tensor file).
/// </summary>
/// <remarks>
/// Each file is written under a temporary name and renamed into place (<see cref="AtomicFile"/>), and the JSON file is
/// written last and names the hash of its tensor file, so a pair is valid only if both writes
/// completed. Writing epoch N never touches the files of earlier epochs: a crash or a kill at
/// any point leaves the previous good checkpoint loadable. Older pairs beyond
/// <see cref="Keep"/> are deleted only after a new pair is complete.
/// </remarks>
public sealed class CheckpointStore
{
    private const string Prefix = "epoch-";
    private const int FormatVersion = 1;

    /// <summary>Opens (and creates) the folder.</summary>
    /// <param name="directory">Where the checkpoints live.</param>
    /// <param name="keep">How many of the newest complete checkpoints to keep (at least 1).</param>
    public CheckpointStore(string directory, int keep = 2)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentOutOfRangeException.ThrowIfLessThan(keep, 1);
        Directory = System.IO.Directory.CreateDirectory(directory).FullName;
        Keep = keep;
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

        using (var scope = NewDisposeScope())
        {
            var cpu = tensors.ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().contiguous());
            AtomicFile.Write(tensorPath, tmp => Safetensors.SaveStateDict(tmp, cpu));
        }

        var envelope = new JsonObject
        {
            ["format"] = FormatVersion,
            ["epoch"] = epoch,
            ["tensors"] = Path.GetFileName(tensorPath),
            ["sha256"] = Sha256(tensorPath),
            ["metadata"] = metadata.DeepClone(),
        };
        AtomicFile.WriteAllText(jsonPath, envelope.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Prune();
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
            catch (CheckpointException e) { skipped?.Add(e.Message); }
        }
        return null;
    }

    /// <summary>Loads and verifies the checkpoint of <paramref name="epoch"/>.</summary>
    /// <exception cref="CheckpointException">Missing, truncated or corrupted files, or a hash mismatch.</exception>
    public Checkpoint Load(int epoch)
    {
        string stem = Path.Combine(Directory, Prefix + epoch.ToString("D4", CultureInfo.InvariantCulture));
        string jsonPath = stem + ".json";
        if (!File.Exists(jsonPath))
            throw new CheckpointException($"{jsonPath}: no checkpoint for epoch {epoch}.");
        JsonObject envelope;
        try
        {
            envelope = JsonNode.Parse(File.ReadAllText(jsonPath)) as JsonObject
                       ?? throw new CheckpointException($"{jsonPath}: expected a JSON object.");
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{jsonPath}: not valid JSON (truncated or corrupted): {e.Message}", e);
        }
        int format = envelope["format"]?.GetValue<int>() ?? -1;
        if (format != FormatVersion)
            throw new CheckpointException($"{jsonPath}: format {format}; expected {FormatVersion}.");
        string tensorPath = Path.Combine(Directory, envelope["tensors"]?.GetValue<string>() ?? "");
        if (!File.Exists(tensorPath))
            throw new CheckpointException($"{jsonPath}: its tensor file {tensorPath} is missing.");
        string expected = envelope["sha256"]?.GetValue<string>() ?? "", actual = Sha256(tensorPath);
        if (!string.Equals(expected, actual, StringComparison.Ordinal))
            throw new CheckpointException($"{tensorPath}: SHA-256 {actual} does not match {expected} recorded in {jsonPath} (truncated or corrupted).");

        Dictionary<string, Tensor> tensors;
        try { tensors = Safetensors.LoadStateDict(tensorPath); }
        catch (Exception e) when (e is not CheckpointException)
        {
            throw new CheckpointException($"{tensorPath}: not a readable safetensors file: {e.Message}", e);
        }
        var metadata = envelope["metadata"] as JsonObject ?? [];
        return new Checkpoint(envelope["epoch"]?.GetValue<int>() ?? epoch, tensors, (JsonObject)metadata.DeepClone(), tensorPath);
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

    private static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
    }
}
