using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Defeat.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Clip.Loading;

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header mapping each
/// name to its dtype, shape and byte range, then the raw little-endian tensor data.
/// </summary>
/// <remarks>
/// <para>Written here (rather than through TorchSharp.PyBridge) to read any key set without a module to load into and
/// to report truncated or malformed files as <see cref="ClipCheckpointException"/>s naming the problem.</para>
/// <para>Safetensors is data only: reading parses JSON and copies bytes. <see cref="Read"/> checks the whole header
/// before it allocates any tensor, with the rules of the format's reference implementation: a header no longer than a
/// limit and inside the file; a JSON object whose entries are <c>__metadata__</c> (string values) or
/// <c>{"dtype", "shape", "data_offsets"}</c>; non-negative whole dimensions whose product and byte size fit in 64 bits;
/// <c>data_offsets</c> <c>[begin, end]</c> with <c>0 &lt;= begin &lt;= end</c> and <c>end - begin</c> equal to the
/// byte size; ranges that, sorted, follow one another without gap or overlap and cover the data to the end of the
/// file. Each failure names the tensor and the rule.</para>
/// </remarks>
public static class SafetensorsFile
{
    /// <summary>
    /// The default limit on the JSON header's length: 16 MiB. The format's reference implementation accepts up to
    /// 100 MB; the header of a ViT-L/14 file is about 52 KB. Pass another limit to <see cref="Read"/>, or set
    /// <see cref="ClipLoadOptions.MaxSafetensorsHeaderBytes"/>.
    /// </summary>
    public const long DefaultMaxHeaderBytes = 16L << 20;

    /// <summary>Whether a file starts like a safetensors file (a header length of at least 2 followed by '{').</summary>
    /// <param name="path">The file.</param>
    public static bool LooksLikeSafetensors(string path)
    {
        using var stream = File.OpenRead(path);
        Span<byte> head = stackalloc byte[9];
        if (stream.Read(head) < 9) return false;
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(head);
        return n > 1 && head[8] == (byte)'{';
    }

    /// <summary>One tensor's entry in the header, checked.</summary>
    private sealed record Entry(string Name, string DType, ScalarType Type, long[] Shape, long Begin, long End);

    /// <summary>Reads every tensor of a safetensors file onto the CPU in its stored dtype, after checking the whole header.</summary>
    /// <param name="path">The file.</param>
    /// <param name="maxHeaderBytes">The longest JSON header accepted (default <see cref="DefaultMaxHeaderBytes"/>).</param>
    /// <returns>Tensors by name, and the header's <c>__metadata__</c> strings (empty when absent).</returns>
    /// <exception cref="ClipCheckpointException">The file is not safetensors, is truncated, its header is over the
    /// limit or malformed, or a tensor's byte range breaks a rule (the message names the tensor).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxHeaderBytes"/> is not positive.</exception>
    public static (Dictionary<string, Tensor> Tensors, Dictionary<string, string> Metadata) Read(string path, long maxHeaderBytes = DefaultMaxHeaderBytes)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxHeaderBytes);
        // Streamed tensor by tensor: released CLIP files reach gigabytes, more than one array may hold.
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        long fileLength = stream.Length;
        if (fileLength < 8) throw new ClipCheckpointException($"The file has {fileLength} bytes; a safetensors file has at least 8.", path);
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > (ulong)maxHeaderBytes)
            throw new ClipCheckpointException(
                $"The safetensors header declares {headerLength} bytes, more than the limit of {maxHeaderBytes} bytes " +
                $"(ClipLoadOptions.{nameof(ClipLoadOptions.MaxSafetensorsHeaderBytes)}; a CLIP file's header is tens of kilobytes).", path);
        if (headerLength > (ulong)(fileLength - 8))
            throw new ClipCheckpointException(
                $"The safetensors header declares {headerLength} bytes but the file has {fileLength - 8} after its length: truncated or not safetensors.", path);
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        long dataStart = 8 + (long)headerLength;
        var (entries, metadata) = ParseHeader(headerBytes, fileLength - dataStart, path);

        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var entry in entries)
            {
                long length = entry.End - entry.Begin;
                if (length > Array.MaxLength)
                    throw new ClipCheckpointException($"Tensor '{entry.Name}' has {length} bytes; this reader handles tensors up to {Array.MaxLength} bytes.", path);
                var data = new byte[length];
                stream.Seek(dataStart + entry.Begin, SeekOrigin.Begin);
                stream.ReadExactly(data);
                var t = torch.empty(entry.Shape, entry.Type);
                CopyInto(t, data);
                tensors[entry.Name] = t;
            }
        }
        catch (Exception e) when (e is not ClipCheckpointException and not OutOfMemoryException)
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw new ClipCheckpointException("The safetensors data could not be read.", path, inner: e);
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
        return (tensors, metadata);
    }

    /// <summary>Checks the header's form and every byte range; returns the entries in file order.</summary>
    private static (List<Entry> Entries, Dictionary<string, string> Metadata) ParseHeader(byte[] headerBytes, long dataLength, string path)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(headerBytes);
        }
        catch (JsonException e)
        {
            throw new ClipCheckpointException($"The safetensors header is not valid JSON ({e.Message}): truncated or not safetensors.", path, inner: e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ClipCheckpointException($"The safetensors header is a JSON {root.ValueKind}; it must be a JSON object of tensor entries.", path);
            var entries = new List<Entry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in root.EnumerateObject())
            {
                string name = property.Name;
                if (!names.Add(name))
                    throw new ClipCheckpointException($"Tensor '{name}' appears twice in the safetensors header.", path);
                if (name == "__metadata__")
                {
                    if (property.Value.ValueKind != JsonValueKind.Object)
                        throw new ClipCheckpointException($"The safetensors __metadata__ is a JSON {property.Value.ValueKind}; it must be an object of strings.", path);
                    foreach (var item in property.Value.EnumerateObject())
                    {
                        if (item.Value.ValueKind != JsonValueKind.String)
                            throw new ClipCheckpointException($"The safetensors __metadata__ entry '{item.Name}' is a JSON {item.Value.ValueKind}; metadata values must be strings.", path);
                        metadata[item.Name] = item.Value.GetString()!;
                    }
                    continue;
                }
                entries.Add(ParseEntry(name, property.Value, dataLength, path));
            }
            CheckRanges(entries, dataLength, path);
            return (entries, metadata);
        }
    }

    private static Entry ParseEntry(string name, JsonElement value, long dataLength, string path)
    {
        ClipCheckpointException Bad(string what) => new($"Tensor '{name}': {what}.", path);
        if (value.ValueKind != JsonValueKind.Object)
            throw Bad($"its header entry is a JSON {value.ValueKind}, not a JSON object with dtype, shape and data_offsets");
        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Bad("'dtype' is missing or not a string");
        string dtype = dtypeElement.GetString()!;
        var (type, size) = ToScalarType(dtype, path, name);
        if (!value.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Bad("'shape' is missing or not an array");
        var shape = new long[shapeElement.GetArrayLength()];
        int d = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (!WholeNumber(dim, out shape[d]))
                throw Bad($"shape {shapeElement.GetRawText()} must hold whole numbers");
            if (shape[d] < 0) throw Bad($"shape {shapeElement.GetRawText()} has a negative dimension");
            d++;
        }
        string shapeText = "[" + string.Join(", ", shape) + "]";
        if (!value.TryGetProperty("data_offsets", out var offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array
            || offsetsElement.GetArrayLength() != 2
            || !WholeNumber(offsetsElement[0], out long begin) || !WholeNumber(offsetsElement[1], out long end))
            throw Bad($"'data_offsets' must be two whole numbers [begin, end]; found {(offsetsElement.ValueKind == JsonValueKind.Undefined ? "nothing" : offsetsElement.GetRawText())}");
        string offsetsText = $"data_offsets [{begin}, {end}]";
        if (begin < 0 || end < 0)
            throw Bad($"{offsetsText} are negative; ranges count from the start of the data after the header");
        if (end < begin) throw Bad($"{offsetsText}: the range ends before it begins");
        long count, bytes;
        try
        {
            count = 1;
            foreach (long s in shape) count = checked(count * s);
        }
        catch (OverflowException)
        {
            throw Bad($"shape {shapeText} has more elements than a 64-bit count holds (the product overflows)");
        }
        try
        {
            bytes = checked(count * size);
        }
        catch (OverflowException)
        {
            throw Bad($"shape {shapeText} of {dtype} needs more bytes than a 64-bit size holds (the byte count overflows)");
        }
        if (end - begin != bytes)
            throw Bad($"{offsetsText} give {end - begin} bytes, but shape {shapeText} of {dtype} needs {bytes}");
        if (end > dataLength)
            throw Bad($"{offsetsText}: the range ends at byte {end} of the data, but the data has {dataLength} bytes: the file is truncated");
        return new Entry(name, dtype, type, shape, begin, end);
    }

    private static bool WholeNumber(JsonElement element, out long value)
    {
        value = 0;
        return element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out value);
    }

    /// <summary>Sorted by position, the ranges must follow one another with no gap or overlap and end where the data ends.</summary>
    private static void CheckRanges(List<Entry> entries, long dataLength, string path)
    {
        var ordered = entries.OrderBy(e => e.Begin).ThenBy(e => e.End).ThenBy(e => e.Name, StringComparer.Ordinal).ToList();
        long next = 0;
        Entry? previous = null;
        foreach (var e in ordered)
        {
            if (e.Begin < next)
                throw new ClipCheckpointException(
                    $"Tensor '{e.Name}': data_offsets [{e.Begin}, {e.End}] overlaps '{previous!.Name}' (bytes [{previous.Begin}, {previous.End}]).", path);
            if (e.Begin > next)
                throw new ClipCheckpointException(
                    $"Tensor '{e.Name}': data_offsets [{e.Begin}, {e.End}] leave a gap of {e.Begin - next} bytes after " +
                    (previous is null ? "the start of the data" : $"'{previous.Name}'") + "; safetensors stores tensors back to back.", path);
            next = e.End;
            previous = e;
        }
        if (next != dataLength)
            throw new ClipCheckpointException(
                $"The safetensors data has {dataLength - next} bytes after the last tensor (the tensors end at byte {next} of {dataLength}): damaged or not safetensors.", path);
    }

    /// <summary>
    /// Writes tensors to a safetensors file, first under a temporary name, then renamed over <paramref name="path"/>,
    /// so a crash never leaves a half-written file under the final name.
    /// </summary>
    /// <param name="path">Destination.</param>
    /// <param name="tensors">Tensors by name (any device; written from CPU copies).</param>
    /// <param name="metadata">Optional string metadata.</param>
    public static void Write(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
        {
            var m = new JsonObject();
            foreach (var (k, v) in metadata) m[k] = v;
            header["__metadata__"] = m;
        }
        // Header first (offsets from shapes), then the data tensor by tensor: no second copy of the whole model.
        var ordered = tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        long offset = 0;
        foreach (var (name, tensor) in ordered)
        {
            long length = tensor.numel() * tensor.ElementSize;
            header[name] = new JsonObject
            {
                ["dtype"] = FromScalarType(tensor.dtype, name),
                ["shape"] = new JsonArray(tensor.shape.Select(s => (JsonNode)s).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + length),
            };
            offset += length;
        }
        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        int pad = (8 - headerBytes.Length % 8) % 8;
        AtomicFile.Write(path, temp =>
        {
            using var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)(headerBytes.Length + pad));
            stream.Write(len);
            stream.Write(headerBytes);
            for (int i = 0; i < pad; i++) stream.WriteByte((byte)' ');
            foreach (var (_, tensor) in ordered)
            {
                using var cpu = tensor.detach().cpu().contiguous();
                if (cpu.numel() > 0) stream.Write(cpu.bytes);
            }
        });
    }

    private static void CopyInto(Tensor t, Span<byte> data)
    {
        if (data.Length == 0) return;
        t.bytes = data;
    }

    private static (ScalarType, int) ToScalarType(string dtype, string path, string name) => dtype switch
    {
        "F32" => (ScalarType.Float32, 4),
        "F16" => (ScalarType.Float16, 2),
        "BF16" => (ScalarType.BFloat16, 2),
        "F64" => (ScalarType.Float64, 8),
        "I64" => (ScalarType.Int64, 8),
        "I32" => (ScalarType.Int32, 4),
        "I16" => (ScalarType.Int16, 2),
        "I8" => (ScalarType.Int8, 1),
        "U8" => (ScalarType.Byte, 1),
        "BOOL" => (ScalarType.Bool, 1),
        _ => throw new ClipCheckpointException($"Tensor '{name}' has dtype '{dtype}', which this reader does not support.", path),
    };

    private static string FromScalarType(ScalarType t, string name) => t switch
    {
        ScalarType.Float32 => "F32",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Float64 => "F64",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        ScalarType.Int16 => "I16",
        ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8",
        ScalarType.Bool => "BOOL",
        _ => throw new ArgumentException($"tensor '{name}' has dtype {t}, which safetensors cannot store.", nameof(name)),
    };
}
