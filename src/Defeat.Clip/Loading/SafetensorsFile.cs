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
/// Written here (rather than through TorchSharp.PyBridge) to read any key set without a module to load into and
/// to report truncated or malformed files as <see cref="ClipCheckpointException"/>s naming the problem.
/// </remarks>
public static class SafetensorsFile
{
    private const long MaxHeaderBytes = 100_000_000;

    /// <summary>Whether a file starts like a safetensors file (a plausible header length followed by '{').</summary>
    /// <param name="path">The file.</param>
    public static bool LooksLikeSafetensors(string path)
    {
        using var stream = File.OpenRead(path);
        Span<byte> head = stackalloc byte[9];
        if (stream.Read(head) < 9) return false;
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(head);
        return n > 1 && n <= MaxHeaderBytes && head[8] == (byte)'{';
    }

    /// <summary>Reads every tensor of a safetensors file onto the CPU in its stored dtype.</summary>
    /// <param name="path">The file.</param>
    /// <returns>Tensors by name, and the header's <c>__metadata__</c> strings (empty when absent).</returns>
    /// <exception cref="ClipCheckpointException">The file is not safetensors, or is truncated or malformed.</exception>
    public static (Dictionary<string, Tensor> Tensors, Dictionary<string, string> Metadata) Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        // Streamed tensor by tensor: released CLIP files reach gigabytes, more than one array may hold.
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        long fileLength = stream.Length;
        if (fileLength < 8) throw new ClipCheckpointException($"The file has {fileLength} bytes; a safetensors file has at least 8.", path);
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > MaxHeaderBytes || 8 + (long)headerLength > fileLength)
            throw new ClipCheckpointException(
                $"The safetensors header claims {headerLength} bytes but the file has {fileLength} bytes: truncated or not safetensors.", path);
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        JsonObject header;
        try
        {
            header = JsonNode.Parse(headerBytes)?.AsObject()
                ?? throw new ClipCheckpointException("The safetensors header is empty.", path);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new ClipCheckpointException("The safetensors header is not a JSON object: truncated or not safetensors.", path, inner: e);
        }

        long dataStart = 8 + (long)headerLength;
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, node) in header)
            {
                if (name == "__metadata__")
                {
                    foreach (var (k, v) in node!.AsObject()) metadata[k] = v?.GetValue<string>() ?? "";
                    continue;
                }
                var entry = node!.AsObject();
                string dtype = entry["dtype"]!.GetValue<string>();
                long[] shape = entry["shape"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
                var offsets = entry["data_offsets"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
                var (scalar, size) = ToScalarType(dtype, path, name);
                long count = shape.Aggregate(1L, (a, b) => a * b);
                long begin = dataStart + offsets[0], end = dataStart + offsets[1];
                if (offsets[1] - offsets[0] != count * size)
                    throw new ClipCheckpointException($"Tensor '{name}' has {offsets[1] - offsets[0]} bytes; shape [{string.Join(", ", shape)}] of {dtype} needs {count * size}.", path);
                if (end > fileLength)
                    throw new ClipCheckpointException(
                        $"Tensor '{name}' ends at byte {end} but the file has {fileLength} bytes: the file is truncated.", path);
                var data = new byte[end - begin];
                stream.Seek(begin, SeekOrigin.Begin);
                stream.ReadExactly(data);
                var t = torch.empty(shape, scalar);
                CopyInto(t, data);
                tensors[name] = t;
            }
        }
        catch (Exception e) when (e is not ClipCheckpointException)
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw new ClipCheckpointException("The safetensors header is malformed.", path, inner: e);
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
        return (tensors, metadata);
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
