using System.Text.Json;

namespace Defeat.Samples.Clip;

/// <summary>
/// A CoOp split file (<c>split_zhou_*.json</c>): <c>{"train": [[relpath, label, classname], ...], "val": [...], "test": [...]}</c>,
/// paths relative to an image root. The three parts share one list of class names, indexed by label.
/// </summary>
/// <param name="Train">The training part (few-shot sets are drawn from it).</param>
/// <param name="Val">The validation part (empty when the file has none).</param>
/// <param name="Test">The test part.</param>
public sealed record CoOpSplit(ImageFileDataset Train, ImageFileDataset Val, ImageFileDataset Test)
{
    /// <summary>Reads a split file; checks that the image root exists and that every listed file exists.</summary>
    /// <param name="splitPath">The JSON file.</param>
    /// <param name="imageRoot">The folder the relative paths start from.</param>
    /// <param name="options">Decoding limits for the three data sets; defaults when null.</param>
    /// <exception cref="DatasetException">The file or root is missing, the JSON is malformed or not in CoOp's layout, labels
    /// and class names disagree, an entry's path is absolute or leads outside the image root, or a listed image is missing.</exception>
    public static CoOpSplit Read(string splitPath, string imageRoot, ImageFileDatasetOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(splitPath);
        ArgumentNullException.ThrowIfNull(imageRoot);
        string split = Path.GetFullPath(splitPath), root = Path.GetFullPath(imageRoot);
        if (!File.Exists(split)) throw new DatasetException(split, "split file not found; expected a CoOp split JSON file.");
        if (!Directory.Exists(root)) throw new DatasetException(root, "image root not found; expected the folder the split file's paths are relative to.");

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(split));
        }
        catch (JsonException e)
        {
            throw new DatasetException(split, $"is not valid JSON ({e.Message}); expected {Layout}.", e);
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new DatasetException(split, $"the top level is a JSON {document.RootElement.ValueKind}; expected {Layout}.");
            var names = new SortedDictionary<long, string>();
            var parts = new Dictionary<string, List<(string Path, long Label)>>();
            foreach (var part in new[] { "train", "val", "test" })
            {
                if (!document.RootElement.TryGetProperty(part, out var array))
                {
                    if (part == "val") { parts[part] = []; continue; }
                    throw new DatasetException(split, $"has no \"{part}\" list; expected {Layout}.");
                }
                parts[part] = Entries(split, root, part, array, names);
            }
            for (long label = 0; label < names.Count; label++)
                if (!names.ContainsKey(label))
                    throw new DatasetException(split, $"labels are not 0..{names.Count - 1}: label {label} never occurs (labels seen: {string.Join(", ", names.Keys)}).");
            var classNames = names.Values.ToList();
            ImageFileDataset Make(string part) => new(classNames, parts[part].Select(e => new ImageFile(e.Path, e.Label)).ToList(), options);
            var result = new CoOpSplit(Make("train"), Make("val"), Make("test"));
            if (result.Train.Files.Count == 0) throw new DatasetException(split, "the \"train\" list is empty; expected the training images to draw few-shot sets from.");
            if (result.Test.Files.Count == 0) throw new DatasetException(split, "the \"test\" list is empty; expected the images to evaluate on.");
            return result;
        }
    }

    private const string Layout = "{\"train\": [[relpath, label, classname], ...], \"val\": [...], \"test\": [...]}";

    private static List<(string, long)> Entries(string split, string root, string part, JsonElement array, SortedDictionary<long, string> names)
    {
        if (array.ValueKind != JsonValueKind.Array)
            throw new DatasetException(split, $"\"{part}\" is a JSON {array.ValueKind}; expected a list of [relpath, label, classname].");
        var entries = new List<(string, long)>();
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            string where = $"\"{part}\"[{i}]";
            if (item.ValueKind != JsonValueKind.Array || item.GetArrayLength() != 3
                || item[0].ValueKind != JsonValueKind.String || item[1].ValueKind != JsonValueKind.Number || item[2].ValueKind != JsonValueKind.String
                || !item[1].TryGetInt64(out long label) || label < 0)
                throw new DatasetException(split, $"{where} is {Truncate(item.GetRawText())}; expected [relpath (string), label (integer >= 0), classname (string)].");
            string className = item[2].GetString()!;
            if (names.TryGetValue(label, out var known) && known != className)
                throw new DatasetException(split, $"{where} names label {label} \"{className}\" but an earlier entry named it \"{known}\"; expected one class name per label.");
            names[label] = className;
            string relative = item[0].GetString()!;
            // A split file is data from elsewhere: it may name only files under the root (checked on the path's text;
            // links inside the root are the root owner's choice).
            if (Path.IsPathRooted(relative))
                throw new DatasetException(split, $"{where} names \"{relative}\", an absolute path; expected a path relative to the image root {root}.");
            string path = Path.GetFullPath(Path.Combine(root, relative));
            string back = Path.GetRelativePath(root, path);
            if (back == ".." || back.StartsWith(".." + Path.DirectorySeparatorChar, StringComparison.Ordinal) || Path.IsPathRooted(back))
                throw new DatasetException(split, $"{where} names \"{relative}\", which resolves to {path}, outside the image root {root}; expected a path inside it.");
            if (!File.Exists(path))
                throw new DatasetException(path, $"listed at {where} of {split} but not found under the image root {root}.");
            entries.Add((path, label));
            i++;
        }
        return entries;
    }

    private static string Truncate(string json) => json.Length <= 80 ? json : json[..77] + "...";
}
