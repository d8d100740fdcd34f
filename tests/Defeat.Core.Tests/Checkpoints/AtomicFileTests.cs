using Defeat.Checkpoints;

namespace Defeat.Tests.Checkpoints;

public class AtomicFileTests
{
    private string _dir = "";

    [SetUp]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("defeat-atomic-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void TheTemporaryNameKeepsFolderAndExtension()
    {
        var temp = AtomicFile.TempPath(Path.Combine(_dir, "robustness.png"));
        Assert.That(Path.GetDirectoryName(temp), Is.EqualTo(_dir));
        Assert.That(Path.GetFileName(temp), Is.EqualTo($"robustness.tmp-{Environment.ProcessId}.png"));
    }

    [Test]
    public void AFailedWriteLeavesTheOldFileAndNoTemporaryFile()
    {
        var path = Path.Combine(_dir, "results.md");
        AtomicFile.WriteAllText(path, "first");
        File.WriteAllText(AtomicFile.TempPath(path), "left by a killed writer");

        var e = Assert.Throws<IOException>(() => AtomicFile.Write(path, temp =>
        {
            Assert.That(File.Exists(temp), Is.False, "a stale temporary file is removed before writing");
            File.WriteAllText(temp, "half");
            throw new IOException("disk full");
        }))!;
        Assert.That(e.Message, Is.EqualTo("disk full"));
        Assert.That(File.ReadAllText(path), Is.EqualTo("first"));
        Assert.That(Directory.GetFiles(_dir), Is.EqualTo(new[] { path }));

        AtomicFile.WriteAllText(path, "second");
        Assert.That(File.ReadAllText(path), Is.EqualTo("second"));
        Assert.That(Directory.GetFiles(_dir), Is.EqualTo(new[] { path }));
    }
}
