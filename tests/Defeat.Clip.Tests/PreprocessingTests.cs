using System.Text.Json;
using Defeat.Clip.Preprocessing;

namespace Defeat.Tests.Clip;

/// <summary>Preprocessing against the reference: PIL bicubic resize + centre crop + ToTensor, and torch's bicubic antialias.</summary>
public class PreprocessingTests
{
    private sealed record Reference(int Size, float[] Pil, float[] Torch);

    private static Reference Load() => JsonSerializer.Deserialize<Reference>(
        File.ReadAllText(Fixture.File("preprocess.json")), new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!;

    [Test]
    public void TensorPathMatchesTorchBicubicAntialias()
    {
        using var scope = NewDisposeScope();
        var reference = Load();
        var pixels = ClipPreprocessor.DecodeImage(Fixture.File("preprocess_input.png"));
        Assert.That(pixels.shape, Is.EqualTo(new long[] { 3, 30, 45 }));
        var result = new ClipPreprocessor(reference.Size).Preprocess(pixels);
        var expected = tensor(reference.Torch).reshape(3, reference.Size, reference.Size).Clamp(0.0, 1.0);
        Fixture.AssertClose(result, expected, 1e-5, "torch bicubic antialias");
    }

    [Test]
    public void FileMatchesPilReferenceWithinMeasuredTolerance()
    {
        using var scope = NewDisposeScope();
        var reference = Load();
        var result = new ClipPreprocessor(reference.Size).LoadImage(Fixture.File("preprocess_input.png"));
        var expected = tensor(reference.Pil).reshape(3, reference.Size, reference.Size);
        // PIL works in 8-bit fixed point and rounds its output to 1/255 steps; measured max difference here is
        // about 1.9/255 on this image, mean 0.3/255 (docs/clip.md).
        Fixture.AssertClose(result, expected, 2.5 / 255, "PIL bicubic");
        double mean = (result - expected).abs().mean().item<float>();
        Assert.That(mean, Is.LessThan(0.5 / 255), $"mean |difference| {mean * 255:F3}/255");
        TestContext.Out.WriteLine($"max |diff| = {(result - expected).abs().max().item<float>() * 255:F3}/255, mean = {mean * 255:F3}/255");
    }

    [Test]
    public void UInt8BatchIsScaledResizedAndCropped()
    {
        using var scope = NewDisposeScope();
        // A constant image stays constant through resize and crop: a hand-checkable expectation.
        using var s = 51.ToScalar();
        var images = full(2, 3, 20, 40, s, dtype: ScalarType.Byte);
        var result = new ClipPreprocessor(10).Preprocess(images);
        Assert.That(result.shape, Is.EqualTo(new long[] { 2, 3, 10, 10 }));
        Fixture.AssertClose(result, ScalarOps.Full([2, 3, 10, 10], 0.2f), 1e-6, "constant image");
    }

    [Test]
    public void CentreCropTakesTheMiddleColumns()
    {
        using var scope = NewDisposeScope();
        // Already at the target height: no resize, just the crop of columns 2..5 of 8 (round((8-4)/2) = 2).
        var x = ScalarOps.Arange(8, dtype: ScalarType.Float32).Over(10).expand(1, 4, 8).contiguous();
        var result = new ClipPreprocessor(4, channels: 1).Preprocess(x);
        Assert.That(result[0, 0].data<float>().ToArray(), Is.EqualTo(new[] { 0.2f, 0.3f, 0.4f, 0.5f }).Within(1e-6));
    }

    [Test]
    public void BadInputsAreNamed()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() => new ClipPreprocessor(8).Preprocess(zeros(2, 1, 8, 8)));
        Assert.That(e!.Message, Does.Contain("images").And.Contain("[2, 1, 8, 8]"));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new ClipPreprocessor(8, channels: 2));
        var notImage = Path.GetTempFileName();
        try
        {
            File.WriteAllText(notImage, "not an image");
            var d = Assert.Throws<ArgumentException>(() => ClipPreprocessor.DecodeImage(notImage));
            Assert.That(d!.Message, Does.Contain("not an image"));
        }
        finally { File.Delete(notImage); }
    }
}
