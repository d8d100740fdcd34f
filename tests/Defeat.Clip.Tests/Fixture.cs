using Defeat.Clip;
using Defeat.Clip.Loading;
using Defeat.Clip.Tokenization;

namespace Defeat.Tests.Clip;

/// <summary>Paths and readers of the reference fixtures written by Fixtures/make_fixtures.py.</summary>
internal static class Fixture
{
    public static string Dir => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures");

    public static string File(string name) => Path.Combine(Dir, name);

    /// <summary>The tiny model's heads (2) are not CLIP's width / 64, so they are passed explicitly.</summary>
    public static ClipLoadOptions TinyOptions => new() { VisionHeads = 2, TextHeads = 2, Tokenizer = TinyTokenizer.Value };

    public static readonly Lazy<ClipTokenizer> TinyTokenizer = new(() =>
        new ClipTokenizer(System.IO.File.ReadAllText(File("tiny_merges.txt")).Split('\n'), mergeCount: 64));

    private static readonly Lazy<Dictionary<string, Tensor>> LazyReference = new(() =>
    {
        // Created on first use, possibly inside a test's dispose scope: detach so they live for the whole run.
        var tensors = SafetensorsFile.Read(File("tiny_reference.safetensors")).Tensors;
        foreach (var t in tensors.Values) t.DetachFromDisposeScope();
        return tensors;
    });

    /// <summary>Inputs and reference outputs by name (kept for the whole run; never disposed by tests).</summary>
    public static Dictionary<string, Tensor> Reference => LazyReference.Value;

    public static Dictionary<string, string> ReferenceMetadata => SafetensorsFile.Read(File("tiny_reference.safetensors")).Metadata;

    /// <summary>Same shape and bitwise-equal values.</summary>
    public static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.equal(b).all().item<bool>();

    public static void AssertClose(Tensor actual, Tensor expected, double tolerance, string what)
    {
        Assert.That(actual.shape, Is.EqualTo(expected.shape), $"{what}: shape");
        double maxDiff = (actual.to(ScalarType.Float64) - expected.to(ScalarType.Float64)).abs().max().item<double>();
        Assert.That(maxDiff, Is.LessThanOrEqualTo(tolerance), $"{what}: max |difference| {maxDiff:E3} > {tolerance:E1}");
    }
}
