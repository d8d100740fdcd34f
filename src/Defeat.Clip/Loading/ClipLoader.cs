using System.Collections;
using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Defeat.Clip.Loading;

/// <summary>
/// Loads CLIP weights from the files people have: PyTorch state dicts, Hugging Face <c>model.safetensors</c>,
/// TeCoA-style robust image towers, and (when allowed) OpenAI's TorchScript archives; and saves a model as
/// safetensors so it loads fast next time. The format is detected from the file's content, not its name.
/// </summary>
/// <remarks>
/// <para><b>Data and code.</b> Safetensors files and <c>torch.save</c> zip files are read as data. The safetensors
/// reader here parses a JSON header and copies bytes. <c>torch.save</c> pickles go through TorchSharp.PyBridge's
/// unpickler (Razorvine.Pickle), which runs no Python: a GLOBAL opcode only picks a .NET constructor registered with
/// Razorvine (PyBridge's tensor rebuilders and <c>OrderedDict</c>, Razorvine's complex, set, bytearray, array,
/// datetime and decimal), or else a placeholder dictionary that records the class name; REDUCE and NEWOBJ call that
/// .NET constructor, and BUILD calls a .NET method named <c>__setstate__</c> on the object built, if its type has one.
/// The registry is process-wide, so code in the same process that registers other constructors changes what a pickle
/// can build. Both formats are checked: a safetensors header and every byte range before any tensor is allocated, a
/// pickle's size and object count before it is unpickled, its dicts' nesting and cycles while they are flattened.
/// A TorchScript archive is code: <c>torch.jit.load</c> runs the methods it carries, so it is refused unless
/// <see cref="ClipLoadOptions.AllowTorchScript"/> is set.</para>
/// <para>Weights that are NaN or infinite are refused unless <see cref="ClipLoadOptions.AllowNonFiniteWeights"/> is set.</para>
/// </remarks>
/// <example>
/// <code>
/// using var clip = ClipLoader.Load("ViT-B-32.safetensors");     // Hugging Face, a state dict, or one saved here
/// ClipLoader.LoadImageTower(clip, "tecoa4-eps4.pth.tar");       // swap in a robust image tower
/// ClipLoader.Save(clip, "vit-b-32-tecoa.safetensors");          // fast to load next time
/// using var openAi = ClipLoader.Load("ViT-B-32.pt", new ClipLoadOptions { AllowTorchScript = true }); // trusted TorchScript
/// </code>
/// </example>
public static class ClipLoader
{
    private const string MetaVisionHeads = "defeat.clip.vision_heads";
    private const string MetaTextHeads = "defeat.clip.text_heads";
    private const string MetaMean = "defeat.clip.image_mean";
    private const string MetaStd = "defeat.clip.image_std";

    /// <summary>Tells the kind of a checkpoint file from its first bytes (and, for zip files, their entries).</summary>
    /// <param name="path">The file.</param>
    /// <exception cref="ClipCheckpointException">The file is none of the supported kinds, or is a damaged zip.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static CheckpointFormat DetectFormat(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Checkpoint not found: {path}", path);
        var head = new byte[16];
        int read;
        using (var stream = File.OpenRead(path)) read = stream.Read(head, 0, head.Length);
        if (read >= 4 && head[0] == (byte)'P' && head[1] == (byte)'K' && head[2] == 3 && head[3] == 4)
        {
            try
            {
                using var zip = ZipFile.OpenRead(path);
                // TorchScript archives carry the model's code (and constants); torch.save archives only data.
                bool script = zip.Entries.Any(e => e.FullName.Contains("/code/", StringComparison.Ordinal)
                                                   || e.FullName.EndsWith("/constants.pkl", StringComparison.Ordinal));
                if (script) return CheckpointFormat.TorchScript;
                if (zip.Entries.Any(e => e.FullName.EndsWith("data.pkl", StringComparison.Ordinal))) return CheckpointFormat.PyTorchPickle;
                throw new ClipCheckpointException("The file is a zip archive but neither a TorchScript archive nor a torch.save file (no data.pkl).", path);
            }
            catch (InvalidDataException e)
            {
                throw new ClipCheckpointException("The file starts like a zip archive (torch.save / TorchScript) but is damaged or truncated.", path, inner: e);
            }
        }
        if (SafetensorsFile.LooksLikeSafetensors(path)) return CheckpointFormat.Safetensors;
        if (read >= 2 && head[0] == 0x80 && head[1] <= 5)
            throw new ClipCheckpointException(
                "The file is a legacy (pre-1.6, non-zip) torch.save pickle, which cannot be read here; re-save it in Python with torch.save(obj, path) from PyTorch 1.6 or later.", path);
        throw new ClipCheckpointException(
            "The file is not a CLIP checkpoint: expected a TorchScript archive, a torch.save zip file or a safetensors file.", path);
    }

    /// <summary>
    /// Loads a whole CLIP model. The sizes are inferred from the tensors, Hugging Face keys are mapped to OpenAI's,
    /// half-precision weights become float32. The model is returned in evaluation mode on the CPU.
    /// </summary>
    /// <param name="path">A torch.save state dict, a safetensors file, or (with <see cref="ClipLoadOptions.AllowTorchScript"/>) a TorchScript archive.</param>
    /// <param name="options">Overrides for what the file cannot say (heads of non-standard models, normalisation) and
    /// the safety limits; the defaults are safe for files from others.</param>
    /// <param name="logger">Receives one line about what was loaded.</param>
    /// <exception cref="ClipCheckpointException">The file is of the wrong kind, damaged, over a limit of
    /// <paramref name="options"/>, a TorchScript archive not allowed, has NaN or infinite weights, is a ResNet CLIP, a
    /// TeCoA image tower alone (use <see cref="LoadImageTower(ClipModel, string, ClipLoadOptions, ILogger?)"/>), or its
    /// tensors do not fit (every problem listed).</exception>
    public static ClipModel Load(string path, ClipLoadOptions? options = null, ILogger? logger = null)
    {
        options ??= new ClipLoadOptions();
        options.Validate();
        logger ??= NullLogger.Instance;
        var format = DetectFormat(path);
        var (tensors, metadata) = ReadTensors(path, format, options);
        try
        {
            if (tensors.Keys.Any(k => k.StartsWith(TeCoAKey + ".", StringComparison.Ordinal))
                || (tensors.ContainsKey("conv1.weight") && tensors.ContainsKey("class_embedding")))
                throw new ClipCheckpointException(
                    "The file holds an image tower only (TeCoA style); load a full CLIP first and apply it with ClipLoader.LoadImageTower.", path);
            var stateDict = ToOpenAiLayout(tensors, path);
            var inferred = ClipStateDict.InferConfig(stateDict,
                options.VisionHeads ?? MetaInt(metadata, MetaVisionHeads), options.TextHeads ?? MetaInt(metadata, MetaTextHeads), path);
            var mean = options.ImageMean ?? MetaDoubles(metadata, MetaMean);
            var std = options.ImageStd ?? MetaDoubles(metadata, MetaStd);
            if (mean is not null) inferred = inferred with { ImageMean = mean };
            if (std is not null) inferred = inferred with { ImageStd = std };
            ClipModel model;
            try
            {
                model = new ClipModel(inferred, options.Tokenizer);
            }
            catch (ArgumentException e)
            {
                throw new ClipCheckpointException($"The sizes inferred from the checkpoint do not make a valid model: {e.Message}", path, inner: e);
            }
            try
            {
                ClipStateDict.LoadInto(model, stateDict, path);
            }
            catch
            {
                model.Dispose();
                throw;
            }
            model.eval();
            logger.LogInformation("Loaded CLIP ({Format}) from {Path}: image {Res}px/{Patch} width {VW} x {VL}, text width {TW} x {TL}, D = {D}",
                format, path, inferred.ImageResolution, inferred.VisionPatchSize, inferred.VisionWidth, inferred.VisionLayers,
                inferred.TextWidth, inferred.TextLayers, inferred.EmbedDim);
            return model;
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Replaces the image tower of <paramref name="model"/> with the one in a file: a TeCoA-style checkpoint (a dict
    /// whose <c>vision_encoder_state_dict</c> holds the tower without the <c>visual.</c> prefix), a bare tower state
    /// dict, or a full CLIP checkpoint (its <c>visual.*</c> tensors). The text tower is left as it is.
    /// </summary>
    /// <param name="model">The model to update.</param>
    /// <param name="path">The checkpoint.</param>
    /// <param name="logger">Receives one line about what was loaded.</param>
    /// <exception cref="ClipCheckpointException">The file is unreadable, refused under the default
    /// <see cref="ClipLoadOptions"/>, or its image tower does not fit (every problem listed).</exception>
    public static void LoadImageTower(ClipModel model, string path, ILogger? logger = null) =>
        LoadImageTower(model, path, new ClipLoadOptions(), logger);

    /// <summary>
    /// Replaces the image tower of <paramref name="model"/> with the one in a file, under the given options (to allow
    /// a trusted TorchScript archive or non-finite weights, or to change a limit); see
    /// <see cref="LoadImageTower(ClipModel, string, ILogger?)"/>. Head counts, normalisation and tokenizer in
    /// <paramref name="options"/> are not used: the model keeps its own.
    /// </summary>
    /// <param name="model">The model to update.</param>
    /// <param name="path">The checkpoint.</param>
    /// <param name="options">What may be loaded, and the limits.</param>
    /// <param name="logger">Receives one line about what was loaded.</param>
    /// <exception cref="ClipCheckpointException">The file is unreadable, refused under <paramref name="options"/>, or
    /// its image tower does not fit (every problem listed).</exception>
    public static void LoadImageTower(ClipModel model, string path, ClipLoadOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var format = DetectFormat(path);
        var (tensors, _) = ReadTensors(path, format, options);
        try
        {
            Dictionary<string, Tensor> tower;
            if (tensors.Keys.Any(k => k.StartsWith(TeCoAKey + ".", StringComparison.Ordinal)))
                tower = Strip(tensors, TeCoAKey + ".");
            else
            {
                var openAi = HuggingFaceClipKeys.IsHuggingFaceLayout(tensors.Keys) ? HuggingFaceClipKeys.ToOpenAi(tensors) : tensors;
                tower = openAi.Keys.Any(k => k.StartsWith("visual.", StringComparison.Ordinal)) ? Strip(openAi, "visual.") : openAi;
                if (!ReferenceEquals(openAi, tensors))
                    foreach (var (k, t) in openAi) if (!tensors.ContainsKey(k) || !ReferenceEquals(tensors[k], t)) t.Dispose();
            }
            ClipStateDict.LoadInto(model.Visual, tower, path);
            logger?.LogInformation("Loaded the image tower ({Format}) from {Path}: {Count} tensors", format, path, tower.Count);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Saves a model's weights as a safetensors file in OpenAI's key layout (written to a temporary name, then
    /// renamed), with the head counts and normalisation in its metadata so <see cref="Load"/> rebuilds the same model.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="path">Destination, e.g. <c>clip-vit-b-32.safetensors</c>.</param>
    /// <param name="storageType">Floating-point type to store weights in (for example <c>Float16</c>, half the size;
    /// <see cref="Load"/> turns it back into float32); the model's own type when null.</param>
    public static void Save(ClipModel model, string path, ScalarType? storageType = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var config = model.Config;
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            [MetaVisionHeads] = config.ResolvedVisionHeads.ToString(CultureInfo.InvariantCulture),
            [MetaTextHeads] = config.ResolvedTextHeads.ToString(CultureInfo.InvariantCulture),
            [MetaMean] = JsonSerializer.Serialize(config.ImageMean),
            [MetaStd] = JsonSerializer.Serialize(config.ImageStd),
        };
        if (storageType is not { } type)
        {
            SafetensorsFile.Write(path, model.state_dict(), metadata);
            return;
        }
        using var scope = torch.NewDisposeScope();
        var converted = model.state_dict().ToDictionary(kv => kv.Key,
            kv => kv.Value.is_floating_point() ? kv.Value.detach().to_type(type) : kv.Value.detach());
        SafetensorsFile.Write(path, converted, metadata);
    }

    /// <summary>
    /// Reads every tensor of a checkpoint as float32 (integer tensors keep their type) in the file's own key layout;
    /// nested dicts (TeCoA's) are flattened with dots. The caller owns the tensors. Uses the default
    /// <see cref="ClipLoadOptions"/>: no TorchScript, finite weights only, the default limits.
    /// </summary>
    /// <param name="path">The checkpoint.</param>
    /// <exception cref="ClipCheckpointException">The file is of the wrong kind, damaged, or refused under the default options.</exception>
    public static Dictionary<string, Tensor> ReadStateDict(string path) => ReadStateDict(path, new ClipLoadOptions());

    /// <summary>Reads every tensor of a checkpoint as <see cref="ReadStateDict(string)"/> does, under the given options.</summary>
    /// <param name="path">The checkpoint.</param>
    /// <param name="options">What may be loaded, and the limits (head counts, normalisation and tokenizer are not used).</param>
    /// <exception cref="ClipCheckpointException">The file is of the wrong kind, damaged, or refused under <paramref name="options"/>.</exception>
    public static Dictionary<string, Tensor> ReadStateDict(string path, ClipLoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return ReadTensors(path, DetectFormat(path), options).Tensors;
    }

    private const string TeCoAKey = "vision_encoder_state_dict";

    private static (Dictionary<string, Tensor> Tensors, Dictionary<string, string> Metadata) ReadTensors(string path, CheckpointFormat format, ClipLoadOptions options)
    {
        Dictionary<string, Tensor> raw;
        var metadata = new Dictionary<string, string>();
        switch (format)
        {
            case CheckpointFormat.Safetensors:
                (raw, metadata) = SafetensorsFile.Read(path, options.MaxSafetensorsHeaderBytes);
                break;
            case CheckpointFormat.TorchScript:
                if (!options.AllowTorchScript) throw TorchScriptRefused(path);
                raw = ReadTorchScript(path);
                break;
            default:
                raw = ReadPickle(path, options);
                break;
        }
        var result = new Dictionary<string, Tensor>(raw.Count, StringComparer.Ordinal);
        foreach (var (k, t) in raw)
        {
            if (t.is_floating_point() && t.dtype != ScalarType.Float32)
            {
                result[k] = t.to(ScalarType.Float32);
                t.Dispose();
            }
            else result[k] = t;
        }
        if (!options.AllowNonFiniteWeights)
        {
            var problems = NonFiniteProblems(result);
            if (problems.Count > 0)
            {
                foreach (var t in result.Values) t.Dispose();
                throw new ClipCheckpointException(
                    $"The checkpoint has NaN or infinite values in {problems.Count} tensor{(problems.Count == 1 ? "" : "s")}; " +
                    $"set ClipLoadOptions.{nameof(ClipLoadOptions.AllowNonFiniteWeights)} to load them anyway.", path, problems);
            }
        }
        return (result, metadata);
    }

    /// <summary>One line per floating-point tensor that is not all finite: its key and its NaN, +inf and -inf counts.</summary>
    private static List<string> NonFiniteProblems(Dictionary<string, Tensor> tensors)
    {
        var problems = new List<string>();
        foreach (var (key, t) in tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (!t.is_floating_point()) continue;
            using var scope = torch.NewDisposeScope();
            if (t.isfinite().all().item<bool>()) continue;
            long nan = t.isnan().sum().item<long>(), positive = t.isposinf().sum().item<long>(), negative = t.isneginf().sum().item<long>();
            var counts = new List<string>(3);
            if (nan > 0) counts.Add($"{nan} NaN");
            if (positive > 0) counts.Add($"{positive} +inf");
            if (negative > 0) counts.Add($"{negative} -inf");
            problems.Add($"'{key}': {string.Join(", ", counts)} of {t.numel()} values");
        }
        return problems;
    }

    private static ClipCheckpointException TorchScriptRefused(string path)
    {
        string source = PythonString(path);
        string target = PythonString(Path.Combine(Path.GetDirectoryName(path) ?? "", Path.GetFileNameWithoutExtension(path) + "-state-dict.pt"));
        return new ClipCheckpointException(
            "The file is a TorchScript archive (torch.jit.save). A TorchScript archive is a program, not just data: " +
            "torch.jit.load runs the code it carries (its __setstate__ methods) with this process's rights, so it is refused by default. " +
            "Convert it once to a data-only state dict, in Python where you trust the file:" + Environment.NewLine +
            $"  python -c \"import torch; torch.save(torch.jit.load({source}, map_location='cpu').state_dict(), {target})\"" + Environment.NewLine +
            $"and load that file; or, for a file you trust, set ClipLoadOptions.{nameof(ClipLoadOptions.AllowTorchScript)} = true.", path);
    }

    private static string PythonString(string text) => "'" + text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal) + "'";

    private static Dictionary<string, Tensor> ReadTorchScript(string path)
    {
        try
        {
            using var script = torch.jit.load(path, DeviceType.CPU);
            var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var (name, tensor) in script.state_dict())
                result[name] = tensor.detach().clone();
            return result;
        }
        catch (Exception e) when (e is not ClipCheckpointException and not OutOfMemoryException)
        {
            throw new ClipCheckpointException("The TorchScript archive could not be read (damaged, truncated, or saved by an incompatible PyTorch).", path, inner: e);
        }
    }

    private static Dictionary<string, Tensor> ReadPickle(string path, ClipLoadOptions options)
    {
        Hashtable table;
        try
        {
            PickleGuard.Check(path, options.MaxPickleBytes, options.MaxPickleObjects);
            using var stream = File.OpenRead(path);
            table = PyTorchUnpickler.UnpickleStateDict(stream);
        }
        catch (Exception e) when (e is not ClipCheckpointException and not OutOfMemoryException)
        {
            throw new ClipCheckpointException("The torch.save file could not be read (damaged, truncated, or not a dict of tensors).", path, inner: e);
        }
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            Flatten(table, options.MaxNestingDepth, result, path);
        }
        catch
        {
            DisposeTensors(table);
            throw;
        }
        if (result.Count == 0)
        {
            DisposeTensors(table);
            throw new ClipCheckpointException("The torch.save file holds no tensors.", path);
        }
        return result;
    }

    /// <summary>On failure, frees every tensor PyBridge built, visiting each dict once (so cycles end).</summary>
    private static void DisposeTensors(Hashtable top)
    {
        var seen = new HashSet<IDictionary>(ReferenceEqualityComparer.Instance) { top };
        var pending = new Stack<IDictionary>();
        pending.Push(top);
        while (pending.Count > 0)
            foreach (DictionaryEntry entry in pending.Pop())
            {
                if (entry.Value is Tensor t) t.Dispose();
                else if (entry.Value is IDictionary nested && seen.Add(nested)) pending.Push(nested);
            }
    }

    /// <summary>A dict being flattened: its key path, its depth (the top is 1) and the dict it is in.</summary>
    private sealed record Frame(IDictionary Table, string Path, int Depth, Frame? Parent);

    /// <summary>
    /// Flattens nested dicts into dotted keys without recursion. A state dict is a tree: a dict that contains itself
    /// (a cycle), a dict reached twice (which could be reached 2^depth ways) and nesting deeper than
    /// <paramref name="maxDepth"/> are refused.
    /// </summary>
    private static void Flatten(Hashtable top, int maxDepth, Dictionary<string, Tensor> into, string path)
    {
        var seen = new Dictionary<IDictionary, string>(ReferenceEqualityComparer.Instance) { [top] = "" };
        var pending = new Stack<Frame>();
        pending.Push(new Frame(top, "", 1, null));
        while (pending.Count > 0)
        {
            var frame = pending.Pop();
            foreach (DictionaryEntry entry in frame.Table)
            {
                string name = Convert.ToString(entry.Key, CultureInfo.InvariantCulture) ?? "";
                string key = frame.Path.Length == 0 ? name : frame.Path + "." + name;
                switch (entry.Value)
                {
                    case Tensor t:
                        into[key] = t;
                        break;
                    case IDictionary nested:
                        if (seen.TryGetValue(nested, out var first))
                        {
                            for (var up = frame; up is not null; up = up.Parent)
                                if (ReferenceEquals(up.Table, nested))
                                    throw new ClipCheckpointException(
                                        $"The torch.save file's dict at {Quote(key)} contains itself: it is {(first.Length == 0 ? "the top-level dict" : "the dict at " + Quote(first))}, " +
                                        "which it is nested in. A state dict never has such a cycle.", path);
                            throw new ClipCheckpointException(
                                $"The torch.save file has one dict reached twice, at {Quote(first)} and at {Quote(key)}. A state dict is a tree; " +
                                "shared dicts are refused because n levels of them can be reached 2^n ways.", path);
                        }
                        if (frame.Depth + 1 > maxDepth)
                            throw new ClipCheckpointException(
                                $"The torch.save file's dicts are nested more than {maxDepth} deep (at {Quote(key)}); " +
                                $"raise ClipLoadOptions.{nameof(ClipLoadOptions.MaxNestingDepth)} if the file is trusted.", path);
                        seen[nested] = key;
                        pending.Push(new Frame(nested, key, frame.Depth + 1, frame));
                        break;
                    default:
                        break; // epochs, optimiser settings and other non-tensor entries
                }
            }
        }
    }

    private static string Quote(string key) => key.Length <= 200 ? $"'{key}'" : $"'{key[..200]}...' ({key.Length} characters)";

    private static Dictionary<string, Tensor> ToOpenAiLayout(Dictionary<string, Tensor> tensors, string path)
    {
        if (!HuggingFaceClipKeys.IsHuggingFaceLayout(tensors.Keys)) return new Dictionary<string, Tensor>(tensors, StringComparer.Ordinal);
        try
        {
            return HuggingFaceClipKeys.ToOpenAi(tensors);
        }
        catch (Exception e) when (e is not ClipCheckpointException)
        {
            throw new ClipCheckpointException("The Hugging Face tensors could not be mapped to CLIP's layout (mismatched q/k/v projections?).", path, inner: e);
        }
    }

    private static Dictionary<string, Tensor> Strip(Dictionary<string, Tensor> tensors, string prefix) =>
        tensors.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value, StringComparer.Ordinal);

    private static int? MetaInt(Dictionary<string, string> metadata, string key) =>
        metadata.TryGetValue(key, out var s) && int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : null;

    private static double[]? MetaDoubles(Dictionary<string, string> metadata, string key)
    {
        if (!metadata.TryGetValue(key, out var s)) return null;
        try { return JsonSerializer.Deserialize<double[]>(s); }
        catch (JsonException) { return null; }
    }
}
