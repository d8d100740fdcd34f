using System.IO.Compression;
using Defeat.Samples.FashionMnist;

namespace Defeat.Tests.Samples;

public class IdxReaderTests
{
    private string _dir = "";

    [SetUp]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("defeat-idx-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    /// <summary>Writes an IDX file byte by byte, independently of the reader.</summary>
    private static byte[] Idx(byte type, int[] dims, byte[] values)
    {
        var bytes = new List<byte> { 0, 0, type, (byte)dims.Length };
        foreach (var d in dims) bytes.AddRange(new[] { (byte)(d >> 24), (byte)(d >> 16), (byte)(d >> 8), (byte)d });
        bytes.AddRange(values);
        return bytes.ToArray();
    }

    private string Write(string name, byte[] content, bool gzip = false)
    {
        var path = Path.Combine(_dir, name);
        if (gzip)
        {
            using var file = File.Create(path);
            using var gz = new GZipStream(file, CompressionLevel.Fastest);
            gz.Write(content);
        }
        else File.WriteAllBytes(path, content);
        return path;
    }

    [Test]
    public void ReadsPlainAndGzipFiles()
    {
        var values = Enumerable.Range(0, 2 * 3 * 2).Select(i => (byte)(i * 10)).ToArray();
        foreach (var gzip in new[] { false, true })
        {
            var path = Write(gzip ? "a.gz" : "a", Idx(0x08, [2, 3, 2], values), gzip);
            var (shape, data) = IdxReader.Read(path, 3);
            Assert.That(shape, Is.EqualTo(new[] { 2, 3, 2 }));
            Assert.That(data, Is.EqualTo(values));
        }
    }

    [Test]
    public void TruncatedFileNamesWhatIsMissing()
    {
        var full = Idx(0x08, [4], [1, 2, 3, 4]);
        var path = Write("t", full[..^2]);
        var e = Assert.Throws<IdxFormatException>(() => IdxReader.Read(path, 1))!;
        Assert.That(e.Message, Does.Contain("truncated").And.Contain("4 values").And.Contain("got 2"));
        Assert.That(e.Path, Is.EqualTo(path));
    }

    [Test]
    public void TruncatedGzipIsAClearError()
    {
        var path = Write("t.gz", Idx(0x08, [1000], new byte[1000]), gzip: true);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<IdxFormatException>(() => IdxReader.Read(path, 1))!;
        Assert.That(e.Message, Does.Contain(path));
    }

    [Test]
    public void WrongMagicTypeRankAndTrailingBytesAreRejected()
    {
        Assert.That(Assert.Throws<IdxFormatException>(() => IdxReader.Read(Write("m", [1, 2, 8, 1, 0, 0, 0, 0]), 1))!.Message,
            Does.Contain("not an IDX file"));
        Assert.That(Assert.Throws<IdxFormatException>(() => IdxReader.Read(Write("f", Idx(0x0D, [1], [0, 0, 0, 0])), 1))!.Message,
            Does.Contain("0x0D").And.Contain("expected 0x08"));
        Assert.That(Assert.Throws<IdxFormatException>(() => IdxReader.Read(Write("r", Idx(0x08, [1, 1], [7])), 1))!.Message,
            Does.Contain("has 2 dimensions; expected 1"));
        Assert.That(Assert.Throws<IdxFormatException>(() => IdxReader.Read(Write("x", Idx(0x08, [1], [7, 8])), 1))!.Message,
            Does.Contain("past the 1 values"));
        Assert.That(Assert.Throws<IdxFormatException>(() => IdxReader.Read(Path.Combine(_dir, "none"), 1))!.Message,
            Does.Contain("not found"));
    }

    [Test]
    public void FashionMnistLoadScalesPixelsAndChecksLabels()
    {
        // Two 2x2 images; pixel 255 must become exactly 1 and 51 exactly 0.2 (51/255).
        Write("train-images-idx3-ubyte", Idx(0x08, [2, 2, 2], [0, 51, 255, 0, 255, 255, 0, 0]));
        Write("train-labels-idx1-ubyte.gz", Idx(0x08, [2], [9, 3]), gzip: true);
        using var set = FashionMnist.Load(_dir, train: true);
        Assert.That(set.Images.shape, Is.EqualTo(new long[] { 2, 1, 2, 2 }));
        Assert.That(set.Images.data<float>().ToArray(), Is.EqualTo(new[] { 0f, 51f / 255f, 1f, 0f, 1f, 1f, 0f, 0f }));
        Assert.That(set.LabelArray(), Is.EqualTo(new long[] { 9, 3 }));
        Assert.That(set.ClassNames[9], Is.EqualTo("Ankle boot"));

        Write("train-labels-idx1-ubyte.gz", Idx(0x08, [2], [10, 3]), gzip: true);
        Assert.That(Assert.Throws<IdxFormatException>(() => FashionMnist.Load(_dir, train: true))!.Message,
            Does.Contain("label 10 at position 0"));
        Write("train-labels-idx1-ubyte.gz", Idx(0x08, [3], [1, 2, 3]), gzip: true);
        Assert.That(Assert.Throws<IdxFormatException>(() => FashionMnist.Load(_dir, train: true))!.Message,
            Does.Contain("3 labels but").And.Contain("2 images"));
    }

    [Test]
    public void LocateNamesAllThreeWaysWhenNothingIsFound()
    {
        var e = Assert.Throws<DirectoryNotFoundException>(() => FashionMnist.Locate(_dir))!;
        Assert.That(e.Message, Does.Contain("--data").And.Contain("FASHION_MNIST_DIR").And.Contain("dataset-fashion-mnist").And.Contain(_dir));
        Write("train-images-idx3-ubyte.gz", Idx(0x08, [0, 28, 28], []), gzip: true);
        Assert.That(FashionMnist.Locate(_dir), Is.EqualTo(_dir));
    }

    [Test]
    public void RealFashionMnistTestSplitWhenInstalled()
    {
        // .ci/run installs Debian's dataset-fashion-mnist, so this reads the real files in CI.
        var dir = FashionMnist.Locate();
        using var test = FashionMnist.Load(dir, train: false);
        Assert.That(test.Images.shape, Is.EqualTo(new long[] { 10000, 1, 28, 28 }));
        // The published test split is balanced: 1,000 images per class.
        var counts = test.LabelArray().GroupBy(y => y).ToDictionary(g => g.Key, g => g.Count());
        Assert.That(counts.Values, Is.All.EqualTo(1000));
        Assert.That(test.Images.min().item<float>(), Is.GreaterThanOrEqualTo(0f));
        Assert.That(test.Images.max().item<float>(), Is.EqualTo(1f));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void DimensionsWhoseProductOverflowsAreRejected(bool gzip)
    {
        // 2^30 * 2^30 * 16 = 2^64: a 64-bit product wraps to 0 and would match an empty body.
        var path = Write(gzip ? "o.gz" : "o", Idx(0x08, [1 << 30, 1 << 30, 16], []), gzip);
        var e = Assert.Throws<IdxFormatException>(() => IdxReader.Read(path, 3))!;
        Assert.That(e.Message, Does.Contain("[1073741824, 1073741824, 16]").And.Contain("overflow"));
        // A zero dimension makes the product 0 whatever the others are: an empty file of that shape is valid.
        var (shape, data) = IdxReader.Read(Write(gzip ? "z.gz" : "z", Idx(0x08, [int.MaxValue, int.MaxValue, 0], []), gzip), 3);
        Assert.That(shape, Is.EqualTo(new[] { int.MaxValue, int.MaxValue, 0 }));
        Assert.That(data, Is.Empty);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void AHeaderAnnouncingMoreThanTheFileHoldsIsRefusedWithoutAllocatingIt(bool gzip)
    {
        // A 1e9-value header over 10 bytes of data: the size is checked against what the file holds (plain) or
        // against what decompression yields (gzip), never allocated from the header.
        var path = Write(gzip ? "big.gz" : "big", Idx(0x08, [1000, 1000, 1000], new byte[10]), gzip);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<IdxFormatException>(() => IdxReader.Read(path, 3))!;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(e.Message, Does.Contain("truncated").And.Contain("1000000000").And.Contain("got 10"));
        Assert.That(allocated, Is.LessThan(16L << 20), "bytes allocated while refusing the file");
    }
}
