using System.Buffers.Binary;
using System.Text;
using Defeat.Clip.Loading;

namespace Defeat.Tests.Clip;

/// <summary>
/// Hand-made safetensors files that break one rule each (issue 11, item 4): every one is refused with a
/// <see cref="ClipCheckpointException"/> naming the tensor and the rule, and a file at the edge of every rule loads.
/// The rules are the format's own (its reference implementation's validation): byte ranges inside the data, contiguous
/// and covering it, each as long as its shape and dtype need, and a bounded JSON header of the documented form.
/// </summary>
public class SafetensorsValidationTests
{
    private DirectoryInfo _dir = null!;

    [SetUp]
    public void CreateDir() => _dir = Directory.CreateTempSubdirectory("defeat-clip-st-");

    [TearDown]
    public void DeleteDir() => _dir.Delete(recursive: true);

    /// <summary>Writes an 8-byte header length (the JSON's own unless <paramref name="declared"/>), the JSON, then
    /// <paramref name="dataBytes"/> bytes 1, 2, 3, ...</summary>
    private string Craft(string header, int dataBytes, ulong? declared = null)
    {
        var path = Path.Combine(_dir.FullName, "crafted.safetensors");
        var json = Encoding.UTF8.GetBytes(header);
        using var stream = File.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, declared ?? (ulong)json.Length);
        stream.Write(length);
        stream.Write(json);
        for (int i = 0; i < dataBytes; i++) stream.WriteByte((byte)(i + 1));
        return path;
    }

    private static string F32(string name, string shape, string offsets) =>
        $"\"{name}\":{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":{offsets}}}";

    // Each case: the header's entries, the data length, and what the message must say.
    private static IEnumerable<TestCaseData> BrokenFiles()
    {
        yield return new TestCaseData("{" + F32("w", "[2]", "[-8,0]") + "}", 8, new[] { "'w'", "data_offsets [-8, 0]", "negative" })
            .SetName("begin before the data ([-8, 0] would read the header's own bytes)");
        yield return new TestCaseData("{" + F32("w", "[0]", "[8,0]") + "}", 8, new[] { "'w'", "data_offsets [8, 0]", "ends before it begins" })
            .SetName("end before begin");
        yield return new TestCaseData("{" + F32("a", "[2]", "[0,8]") + "," + F32("b", "[2]", "[4,12]") + "}", 12, new[] { "'b'", "overlaps 'a'" })
            .SetName("overlapping ranges");
        yield return new TestCaseData("{" + F32("a", "[2]", "[0,8]") + "," + F32("b", "[2]", "[0,8]") + "}", 8, new[] { "'b'", "overlaps 'a'" })
            .SetName("two tensors on the same bytes");
        yield return new TestCaseData("{" + F32("a", "[1]", "[0,4]") + "," + F32("b", "[1]", "[8,12]") + "}", 12, new[] { "'b'", "gap" })
            .SetName("a gap between ranges");
        yield return new TestCaseData("{" + F32("w", "[3]", "[0,8]") + "}", 8, new[] { "'w'", "8 bytes", "needs 12" })
            .SetName("range shorter than the shape");
        yield return new TestCaseData("{" + F32("w", "[4]", "[0,16]") + "}", 8, new[] { "'w'", "ends at byte 16", "8 bytes", "truncated" })
            .SetName("truncated data");
        yield return new TestCaseData("{" + F32("w", "[1]", "[0,4]") + "}", 8, new[] { "4 bytes after the last tensor" })
            .SetName("bytes after the last tensor");
        yield return new TestCaseData("{" + F32("w", "[4294967296,4294967296,16]", "[0,0]") + "}", 0, new[] { "'w'", "overflows" })
            .SetName("element count overflows 64 bits");
        yield return new TestCaseData("{" + F32("w", "[2305843009213693952]", "[0,0]") + "}", 0, new[] { "'w'", "overflows" })
            .SetName("byte count overflows 64 bits");
        yield return new TestCaseData("{" + F32("w", "[-1]", "[0,0]") + "}", 0, new[] { "'w'", "negative" })
            .SetName("negative dimension");
        yield return new TestCaseData("{" + F32("w", "[2.5]", "[0,10]") + "}", 10, new[] { "'w'", "shape" })
            .SetName("fractional dimension");
        yield return new TestCaseData("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, new[] { "'w'", "data_offsets" })
            .SetName("missing data_offsets");
        yield return new TestCaseData("{" + F32("w", "[2]", "[0,4,8]") + "}", 8, new[] { "'w'", "data_offsets" })
            .SetName("three offsets");
        yield return new TestCaseData("{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, new[] { "'w'", "dtype" })
            .SetName("dtype not a string");
        yield return new TestCaseData("{\"w\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, new[] { "'w'", "'F8'" })
            .SetName("unknown dtype");
        yield return new TestCaseData("{\"w\":5}", 0, new[] { "'w'", "JSON object" })
            .SetName("entry not an object");
        yield return new TestCaseData("[]", 0, new[] { "header", "JSON object" })
            .SetName("header not an object");
        yield return new TestCaseData("{\"w\":", 0, new[] { "header", "not valid JSON" })
            .SetName("header not valid JSON");
        yield return new TestCaseData("{" + F32("w", "[1]", "[0,4]") + "," + F32("w", "[1]", "[4,8]") + "}", 8, new[] { "'w'", "twice" })
            .SetName("one name twice");
        yield return new TestCaseData("{\"__metadata__\":{\"n\":5}}", 0, new[] { "__metadata__", "'n'" })
            .SetName("metadata value not a string");
    }

    [TestCaseSource(nameof(BrokenFiles))]
    public void BrokenFileIsRefusedNamingTheTensorAndTheRule(string header, int dataBytes, string[] expected)
    {
        var path = Craft(header, dataBytes);
        var e = Assert.Throws<ClipCheckpointException>(() => SafetensorsFile.Read(path))!;
        foreach (var fragment in expected) Assert.That(e.Message, Does.Contain(fragment));
        Assert.That(e.Path, Is.EqualTo(path));
        // The same through the loader, which detects the format from the content.
        Assert.Throws<ClipCheckpointException>(() => ClipLoader.ReadStateDict(path));
    }

    [Test]
    public void FileAtTheEdgeOfEveryRuleLoads()
    {
        // Contiguous ranges from 0 to the end of the data, a zero-size tensor between two others, entries in
        // another order than their ranges, an unknown field in an entry (ignored, as the format allows extensions).
        string header = "{" + F32("b", "[1]", "[8,12]") + "," + F32("empty", "[0,3]", "[8,8]") + ","
                        + "\"a\":{\"dtype\":\"U8\",\"shape\":[2,4],\"data_offsets\":[0,8],\"note\":\"extra\"},"
                        + "\"__metadata__\":{\"format\":\"pt\"}}";
        var (tensors, metadata) = SafetensorsFile.Read(Craft(header, 12));
        using var scope = NewDisposeScope();
        Assert.That(tensors.Keys, Is.EquivalentTo(new[] { "a", "b", "empty" }));
        Assert.That(tensors["a"].data<byte>().ToArray(), Is.EqualTo(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }));
        Assert.That(tensors["b"].item<float>(), Is.EqualTo(BitConverter.ToSingle([9, 10, 11, 12])));
        Assert.That(tensors["empty"].shape, Is.EqualTo(new long[] { 0, 3 }));
        Assert.That(metadata["format"], Is.EqualTo("pt"));
    }

    [Test]
    public void DeclaredHeaderLengthBeyondTheFileIsRefused()
    {
        var path = Craft("{}", 0, declared: 1UL << 62);
        var e = Assert.Throws<ClipCheckpointException>(() => SafetensorsFile.Read(path, maxHeaderBytes: long.MaxValue))!;
        Assert.That(e.Message, Does.Contain("4611686018427387904").And.Contain("truncated"));
    }

    [Test]
    public void HeaderOverTheDefaultLimitIsRefusedWithoutBeingRead()
    {
        // A sparse file whose header length is the 16 MiB default plus 8: refused from the 8-byte length alone.
        var path = Path.Combine(_dir.FullName, "huge-header.safetensors");
        long declared = SafetensorsFile.DefaultMaxHeaderBytes + 8;
        using (var stream = File.Create(path))
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)declared);
            stream.Write(length);
            stream.WriteByte((byte)'{');
            stream.SetLength(8 + declared);
        }
        Assert.That(ClipLoader.DetectFormat(path), Is.EqualTo(CheckpointFormat.Safetensors));
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.Load(path))!;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(e.Message, Does.Contain($"{declared} bytes").And.Contain("16777216").And.Contain(nameof(ClipLoadOptions.MaxSafetensorsHeaderBytes)));
        // Reading the 16 MiB header would allocate at least that much; the 1 MiB read buffer is all that is allowed.
        Assert.That(allocated, Is.LessThan(4L << 20), "the header was not read");
    }

    [Test]
    public void HeaderLimitIsAnOption()
    {
        // A valid file whose header is padded to 20,000 bytes (the format allows trailing spaces).
        string json = "{" + F32("w", "[1]", "[0,4]") + "}";
        var path = Craft(json.PadRight(20_000), 4);
        var e = Assert.Throws<ClipCheckpointException>(() => ClipLoader.ReadStateDict(path, new ClipLoadOptions { MaxSafetensorsHeaderBytes = 16_000 }))!;
        Assert.That(e.Message, Does.Contain("20000 bytes").And.Contain("16000"));
        var tensors = ClipLoader.ReadStateDict(path, new ClipLoadOptions());
        Assert.That(tensors["w"].item<float>(), Is.EqualTo(BitConverter.ToSingle([1, 2, 3, 4])));
        foreach (var t in tensors.Values) t.Dispose();
    }
}
