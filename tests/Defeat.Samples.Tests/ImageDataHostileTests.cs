using System.Buffers.Binary;
using System.Diagnostics;
using Defeat.Samples.Clip;
using Defeat.Clip.Preprocessing;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Processing;

namespace Defeat.Tests.Samples;

/// <summary>Hostile image data for the CLIP sample: a tiny PNG that declares a huge image, folders with link loops, and
/// split files that name files outside the image root.</summary>
public class ImageDataHostileTests
{
    private string _dir = "";

    [SetUp]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("defeat-hostile-images-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    /// <summary>CRC-32 (ISO-HDLC, the PNG chunk checksum), bit by bit.</summary>
    private static uint Crc32(ReadOnlySpan<byte> bytes)
    {
        uint crc = 0xFFFFFFFF;
        foreach (var b in bytes)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        return ~crc;
    }

    private static void Chunk(List<byte> png, string type, byte[] data)
    {
        var length = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(length, (uint)data.Length);
        png.AddRange(length);
        var typed = System.Text.Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        png.AddRange(typed);
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32(typed));
        png.AddRange(crc);
    }

    /// <summary>A valid PNG signature and IHDR declaring <paramref name="width"/> x <paramref name="height"/> RGB pixels,
    /// then an 8-byte IDAT (a zlib stream that stops after its first block header) and IEND: 65 bytes in all.</summary>
    private static byte[] DeclaredPng(int width, int height)
    {
        var png = new List<byte> { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A };
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8; // bit depth
        header[9] = 2; // colour type: RGB
        Chunk(png, "IHDR", header);
        Chunk(png, "IDAT", [0x78, 0x9C, 0x62, 0x60, 0x00, 0x00, 0x00, 0x00]);
        Chunk(png, "IEND", []);
        return png.ToArray();
    }

    [Test]
    public void ATinyPngDeclaringThirtyThousandSquaredPixelsIsRefusedFromItsHeader()
    {
        Assert.That(Crc32("IEND"u8), Is.EqualTo(0xAE426082), "the CRC helper against PNG's well-known IEND checksum");
        string path = Path.Combine(_dir, "huge.png");
        File.WriteAllBytes(path, DeclaredPng(30000, 30000));
        Assert.That(new FileInfo(path).Length, Is.EqualTo(65));

        var data = new ImageFileDataset(["huge"], [new ImageFile(path, 0)]);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<DatasetException>(() => data.Load([0], new ClipPreprocessor(8).LoadImage))!;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(e.Path, Is.EqualTo(path));
        Assert.That(e.Message, Does.Contain("30000 x 30000").And.Contain("900000000 pixels").And.Contain("50000000"));
        Assert.That(allocated, Is.LessThan(64L << 20), "managed bytes allocated while refusing the image");

        // The budget is an option: a 3 x 3 image passes 9 pixels and is refused at 8.
        string small = Path.Combine(_dir, "small.png");
        ClipSampleFixture.ImageFolder(Path.Combine(_dir, "tiny"), perClass: 1);
        using (var image = Image.Load(Path.Combine(_dir, "tiny", "red_apple", "img_0.png")))
        {
            image.Mutate(x => x.Resize(3, 3));
            image.SaveAsPng(small);
        }
        using (var nine = new ImageFileDataset(["small"], [new ImageFile(small, 0)], new ImageFileDatasetOptions { MaxPixels = 9 })
                   .Load([0], new ClipPreprocessor(8).LoadImage))
            Assert.That(nine.Images.shape, Is.EqualTo(new long[] { 1, 3, 8, 8 }));
        var eight = Assert.Throws<DatasetException>(() =>
            new ImageFileDataset(["small"], [new ImageFile(small, 0)], new ImageFileDatasetOptions { MaxPixels = 8 }).Load([0], new ClipPreprocessor(8).LoadImage))!;
        Assert.That(eight.Message, Does.Contain("3 x 3").And.Contain("at most 8 pixels"));
        Assert.That(() => new ClipPreprocessor(8) { MaxPixels = 8 }.LoadImage(small), Throws.ArgumentException.With.Message.Contains("at most 8 pixels"));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new ImageFileDatasetOptions { MaxPixels = 0 });

        // The library's decoder refuses it too, before decoding.
        var d = Assert.Throws<ArgumentException>(() => ClipPreprocessor.DecodeImage(path))!;
        Assert.That(d.Message, Does.Contain("30000 x 30000").And.Contain(path));
    }

    [Test]
    public void EveryDecodingFailureIsADatasetExceptionWithThePath()
    {
        string path = Path.Combine(_dir, "small.png");
        // A PNG cut inside its header.
        File.WriteAllBytes(path, DeclaredPng(4, 4)[..20]);
        var data = new ImageFileDataset(["small"], [new ImageFile(path, 0)]);
        var e = Assert.Throws<DatasetException>(() => data.Load([0], new ClipPreprocessor(8).LoadImage))!;
        Assert.That(e.Path, Is.EqualTo(path));
        // Whatever a decoder throws on a valid image file, the data set names the file.
        string good = Path.Combine(ClipSampleFixture.ImageFolder(Path.Combine(_dir, "good"), perClass: 1), "red_apple", "img_0.png");
        var valid = new ImageFileDataset(["good"], [new ImageFile(good, 0)]);
        foreach (var thrown in new Exception[] { new OverflowException("boom"), new InvalidOperationException("boom"), new IndexOutOfRangeException("boom") })
        {
            var wrapped = Assert.Throws<DatasetException>(() => valid.Load([0], _ => throw thrown), thrown.GetType().Name)!;
            Assert.That(wrapped.Path, Is.EqualTo(good));
            Assert.That(wrapped.InnerException, Is.SameAs(thrown));
        }
    }

    private static string Link(string link, string target)
    {
        Directory.CreateSymbolicLink(link, target);
        return link;
    }

    [Test]
    public void DirectoryLinksAreNotFollowedByDefaultAndNoFileIsListedTwice()
    {
        string root = ClipSampleFixture.ImageFolder(Path.Combine(_dir, "images"), perClass: 2);
        string apple = Path.Combine(root, "red_apple"), sky = Path.Combine(root, "blue_sky");
        // A self-link, and two links that lead into each other.
        Link(Path.Combine(apple, "self"), apple);
        Directory.CreateDirectory(Path.Combine(sky, "a"));
        Directory.CreateDirectory(Path.Combine(sky, "b"));
        File.Copy(Path.Combine(sky, "img_0.png"), Path.Combine(sky, "a", "deep.png"));
        Link(Path.Combine(sky, "a", "to_b"), Path.Combine(sky, "b"));
        Link(Path.Combine(sky, "b", "to_a"), Path.Combine(sky, "a"));

        var clock = Stopwatch.StartNew();
        var listing = Task.Run(() => ImageFileDataset.FromFolder(root));
        Assert.That(listing.Wait(TimeSpan.FromSeconds(60)), Is.True, "listing finished");
        var data = listing.Result;
        TestContext.Out.WriteLine($"listed in {clock.ElapsedMilliseconds} ms");
        var expected = new[] { "blue_sky/a/deep.png", "blue_sky/img_0.png", "blue_sky/img_1.png", "red_apple/img_0.png", "red_apple/img_1.png" };
        Assert.That(Relative(root, data), Is.EquivalentTo(expected));

        // Following links: the loops end (each folder once, by its real path) and still no file comes twice.
        var followed = ImageFileDataset.FromFolder(root, new ImageFileDatasetOptions { FollowDirectoryLinks = true });
        Assert.That(followed.Files.Select(f => OsRealPath(f.Path)).Distinct().Count(), Is.EqualTo(5), "five distinct real files");
        Assert.That(followed.Files, Has.Count.EqualTo(5));

        // A link out of the tree: skipped by default, followed on request.
        string elsewhere = ClipSampleFixture.ImageFolder(Path.Combine(_dir, "elsewhere"), perClass: 1);
        Link(Path.Combine(apple, "more"), Path.Combine(elsewhere, "red_apple"));
        Assert.That(Relative(root, ImageFileDataset.FromFolder(root)), Is.EquivalentTo(expected));
        Assert.That(Relative(root, ImageFileDataset.FromFolder(root, new ImageFileDatasetOptions { FollowDirectoryLinks = true })),
            Does.Contain("red_apple/more/img_0.png").And.Count.EqualTo(6));

        // A class folder that is itself a link is an error by default (skipping it would renumber the classes).
        Link(Path.Combine(root, "green_leaf"), Path.Combine(elsewhere, "blue_sky"));
        var e = Assert.Throws<DatasetException>(() => ImageFileDataset.FromFolder(root))!;
        Assert.That(e.Path, Is.EqualTo(Path.Combine(root, "green_leaf")));
        Assert.That(e.Message, Does.Contain("symbolic link").And.Contain("FollowDirectoryLinks"));
    }

    private static List<string> Relative(string root, ImageFileDataset data) =>
        data.Files.Select(f => Path.GetRelativePath(root, f.Path).Replace('\\', '/')).ToList();

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "realpath")]
    private static extern IntPtr NativeRealPath(string path, IntPtr resolved);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "free")]
    private static extern void NativeFree(IntPtr pointer);

    // The real path of a file as the C library resolves it: independent of the listing's own resolution.
    private static string OsRealPath(string path)
    {
        IntPtr resolved = NativeRealPath(path, IntPtr.Zero);
        Assert.That(resolved, Is.Not.EqualTo(IntPtr.Zero), path);
        try { return System.Runtime.InteropServices.Marshal.PtrToStringUTF8(resolved)!; }
        finally { NativeFree(resolved); }
    }

    private string Split(string root, string entry)
    {
        string split = Path.Combine(_dir, "split.json");
        File.WriteAllText(split, $$"""{"train": [["blue_sky/img_0.png", 0, "sky"], [{{System.Text.Json.JsonSerializer.Serialize(entry)}}, 0, "sky"]], "test": [["blue_sky/img_1.png", 0, "sky"]]}""");
        return split;
    }

    [Test]
    public void SplitEntriesOutsideTheImageRootAreRefused()
    {
        string root = ClipSampleFixture.ImageFolder(Path.Combine(_dir, "root"), perClass: 2);
        // A real file next to the root: only the path check can refuse it.
        string secret = Path.Combine(_dir, "secret.png");
        File.Copy(Path.Combine(root, "blue_sky", "img_0.png"), secret);
        foreach (var (entry, says) in new[]
                 {
                     ("../secret.png", "outside the image root"),
                     ("blue_sky/../../secret.png", "outside the image root"),
                     ("../../../../../../../../etc/hostname", "outside the image root"),
                     (secret, "absolute"),
                     ("/etc/hostname", "absolute"),
                 })
        {
            var e = Assert.Throws<DatasetException>(() => CoOpSplit.Read(Split(root, entry), root), entry)!;
            Assert.That(e.Message, Does.Contain("\"train\"[1]").And.Contain(entry).And.Contain(says), entry);
        }
        // Inside the root, even through "..", is fine.
        var split = CoOpSplit.Read(Split(root, "red_apple/../blue_sky/img_1.png"), root);
        Assert.That(split.Train.Files[1].Path, Is.EqualTo(Path.Combine(root, "blue_sky", "img_1.png")));
    }
}
