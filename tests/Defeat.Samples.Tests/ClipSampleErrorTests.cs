using Defeat.Samples.Clip;

namespace Defeat.Tests.Samples;

/// <summary>Every way the CLIP sample's input can be wrong gives an error that names the path or option and what was expected.</summary>
public class ClipSampleErrorTests
{
    private string _dir = "";

    [SetUp]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("defeat-clip-errors-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    private ClipSampleOptions Options(string? images = null) =>
        ClipSampleFixture.Quick(ClipSampleFixture.File("tiny_openai.pt"), Path.Combine(_dir, "run")) with { ImageFolder = images ?? Path.Combine(_dir, "images") };

    private static DatasetException DatasetError(ClipSampleOptions options) =>
        Assert.Throws<DatasetException>(() => ClipSampleRunner.Run(options))!;

    [Test]
    public void MissingImageFolder()
    {
        string missing = Path.Combine(_dir, "nowhere");
        var e = DatasetError(Options(missing));
        Assert.That(e.Path, Is.EqualTo(missing));
        Assert.That(e.Message, Does.StartWith(missing + ":").And.Contain("not found").And.Contain("one sub-folder of images per class"));
    }

    [Test]
    public void ImageFolderWithoutClassFolders()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "images"));
        System.IO.File.WriteAllText(Path.Combine(_dir, "images", "loose.png"), "");
        var e = DatasetError(Options());
        Assert.That(e.Message, Does.Contain("has no sub-folders").And.Contain("one sub-folder of images per class"));
    }

    [Test]
    public void EmptyClassFolder()
    {
        ClipSampleFixture.ImageFolder(Path.Combine(_dir, "images"), perClass: 3);
        string empty = Path.Combine(_dir, "images", "green_leaf");
        Directory.CreateDirectory(empty);
        System.IO.File.WriteAllText(Path.Combine(empty, "notes.txt"), "not an image");
        var e = DatasetError(Options());
        Assert.That(e.Path, Is.EqualTo(empty));
        Assert.That(e.Message, Does.Contain("class folder has no images").And.Contain(".png"));
    }

    [Test]
    public void UnreadableImage()
    {
        ClipSampleFixture.ImageFolder(Path.Combine(_dir, "images"), perClass: 3);
        // Every image of a class is loaded (2 for training, 1 for testing), so the broken one is always read.
        string broken = Path.Combine(_dir, "images", "red_apple", "img_1.png");
        System.IO.File.WriteAllText(broken, "this is not a PNG");
        var e = DatasetError(Options());
        Assert.That(e.Path, Is.EqualTo(broken));
        Assert.That(e.Message, Does.Contain("cannot be read as an image").And.Contain("expected an image file"));
    }

    [Test]
    public void TooFewImagesForTheShots()
    {
        ClipSampleFixture.ImageFolder(Path.Combine(_dir, "images"), perClass: 3);
        var e = DatasetError(Options() with { Shots = 4 });
        Assert.That(e.Message, Does.Contain("class \"blue sky\" has 3 training images; expected at least --shots 4"));
    }

    [Test]
    public void NothingLeftToTest()
    {
        ClipSampleFixture.ImageFolder(Path.Combine(_dir, "images"), perClass: 2);
        var e = DatasetError(Options());
        Assert.That(e.Message, Does.Contain("no images are left to test on"));
    }

    private ClipSampleOptions SplitOptions(string json)
    {
        string root = ClipSampleFixture.ImageFolder(Path.Combine(_dir, "root"), perClass: 2);
        string split = Path.Combine(_dir, "split.json");
        System.IO.File.WriteAllText(split, json);
        return Options() with { ImageFolder = null, SplitPath = split, ImageRoot = root };
    }

    [Test]
    public void SplitFileThatIsNotJson()
    {
        var options = SplitOptions("{\"train\": [[\"blue_sky/img_0.png\", 0, ");
        var e = DatasetError(options);
        Assert.That(e.Path, Is.EqualTo(options.SplitPath));
        Assert.That(e.Message, Does.Contain("is not valid JSON").And.Contain("[[relpath, label, classname], ...]"));
    }

    [Test]
    public void SplitEntryOfTheWrongShape()
    {
        var e = DatasetError(SplitOptions("{\"train\": [[\"blue_sky/img_0.png\", 0, \"sky\"], [\"red_apple/img_0.png\", \"apple\"]], \"test\": []}"));
        Assert.That(e.Message, Does.Contain("\"train\"[1] is [\"red_apple/img_0.png\", \"apple\"]")
            .And.Contain("expected [relpath (string), label (integer >= 0), classname (string)]"));
    }

    [Test]
    public void SplitWithoutATestList()
    {
        var e = DatasetError(SplitOptions("{\"train\": [[\"blue_sky/img_0.png\", 0, \"sky\"]]}"));
        Assert.That(e.Message, Does.Contain("has no \"test\" list"));
    }

    [Test]
    public void SplitWithTwoNamesForOneLabel()
    {
        var e = DatasetError(SplitOptions("{\"train\": [[\"blue_sky/img_0.png\", 0, \"sky\"], [\"red_apple/img_0.png\", 0, \"apple\"]], \"test\": []}"));
        Assert.That(e.Message, Does.Contain("names label 0 \"apple\" but an earlier entry named it \"sky\""));
    }

    [Test]
    public void SplitListingAMissingImage()
    {
        var options = SplitOptions("{\"train\": [[\"blue_sky/img_0.png\", 0, \"sky\"]], \"test\": [[\"blue_sky/gone.png\", 0, \"sky\"]]}");
        var e = DatasetError(options);
        Assert.That(e.Path, Is.EqualTo(Path.Combine(options.ImageRoot!, "blue_sky", "gone.png")));
        Assert.That(e.Message, Does.Contain("listed at \"test\"[0]").And.Contain("not found under the image root"));
    }

    [Test]
    public void MissingImageRoot()
    {
        string split = Path.Combine(_dir, "split.json");
        System.IO.File.WriteAllText(split, "{}");
        string root = Path.Combine(_dir, "no-root");
        var e = DatasetError(Options() with { ImageFolder = null, SplitPath = split, ImageRoot = root });
        Assert.That(e.Path, Is.EqualTo(root));
        Assert.That(e.Message, Does.Contain("image root not found"));
    }

    [Test]
    public void OptionsThatContradictEachOther()
    {
        var both = Assert.Throws<ArgumentException>(() => ClipSampleRunner.Run(Options() with { SplitPath = "s.json", ImageRoot = _dir }))!;
        Assert.That(both.Message, Does.Contain("Give exactly one data set"));
        var noRoot = Assert.Throws<ArgumentException>(() => ClipSampleRunner.Run(Options() with { ImageFolder = null, SplitPath = "s.json" }))!;
        Assert.That(noRoot.Message, Does.Contain("--split s.json needs --image-root"));
        var device = Assert.Throws<ArgumentException>(() => ClipSampleRunner.Run(Options() with { Device = "tpu" }))!;
        Assert.That(device.Message, Does.Contain("--device tpu is not known; expected cpu, cuda or cuda:N"));
        var shots = Assert.Throws<ArgumentOutOfRangeException>(() => ClipSampleRunner.Run(Options() with { Shots = 0 }))!;
        Assert.That(shots.ParamName, Is.EqualTo("Shots"));
    }

    [Test]
    public void HalfPrecisionOnTheCpuIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => ClipSampleRunner.Run(Options() with { Half = true }))!;
        Assert.That(e.Message, Does.Contain("--half needs --device cuda"));
        int code = ClipSampleCommand.Create().Parse(["--clip", ClipSampleFixture.File("tiny_openai.pt"), "--images", _dir, "--half"]).Invoke();
        Assert.That(code, Is.EqualTo(ClipSampleCommand.UsageError));
    }

    [Test]
    public void CudaWithoutAGpuIsOneClearLineAndExitCodeTwo()
    {
        Assume.That(cuda.is_available(), Is.False, "this check is about machines without a CUDA device");
        var e = Assert.Throws<DeviceUnavailableException>(() => ClipSampleRunner.Run(Options() with { Device = "cuda" }))!;
        Assert.That(e.Message, Does.Contain("torch.cuda.is_available() is false").And.Contain("-p:TorchBackend=cuda-linux"));
        Assert.That(e.Message, Does.Not.Contain(Environment.NewLine));
        int code = ClipSampleCommand.Create().Parse(["--clip", ClipSampleFixture.File("tiny_openai.pt"), "--images", _dir, "--device", "cuda"]).Invoke();
        Assert.That(code, Is.EqualTo(ClipSampleCommand.UsageError));
    }

    [Test]
    public void MissingCheckpoint()
    {
        ClipSampleFixture.ImageFolder(Path.Combine(_dir, "images"), perClass: 3);
        string missing = Path.Combine(_dir, "ViT-B-32.pt");
        var e = Assert.Throws<FileNotFoundException>(() => ClipSampleRunner.Run(Options() with { ClipPath = missing }))!;
        Assert.That(e.Message, Does.Contain(missing));
        int code = ClipSampleCommand.Create().Parse(["--clip", missing, "--images", Path.Combine(_dir, "images")]).Invoke();
        Assert.That(code, Is.EqualTo(ClipSampleCommand.UsageError));
    }
}
