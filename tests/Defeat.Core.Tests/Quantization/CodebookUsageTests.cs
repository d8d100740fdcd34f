using Defeat.Quantization;

namespace Defeat.Tests.Quantization;

/// <summary><see cref="CodebookUsage.Perplexity"/> against its formula, bit for bit, and against hand-worked values.</summary>
public class CodebookUsageTests
{
    [TestCase(ScalarType.Float32)]
    [TestCase(ScalarType.Float64)]
    public void PerplexityIsTheLiteralFormulaBitForBit(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var counts = randint(0, 50, new long[] { 512 }, generator: new Generator(1));
        using var zero = 0.ToScalar();
        counts.index_fill_(0, tensor(new long[] { 3, 17, 200 }), zero);
        var c = counts.to_type(dtype);
        var p = c / c.sum().ClampMin(1);
        var expected = (-(p * p.ClampMin(1e-30).log()).sum()).exp();
        Assert.That(CodebookUsage.Perplexity(counts, dtype).equal(expected).all().item<bool>(), Is.True);
    }

    [Test]
    public void PerplexityLeavesItsInputAlone()
    {
        // The computation works in place on a copy: counts already of the result's dtype must not change.
        using var scope = NewDisposeScope();
        var counts = tensor(new float[] { 2, 0, 2 });
        var before = counts.clone();
        Assert.That(CodebookUsage.Perplexity(counts).item<float>(), Is.EqualTo(2f).Within(1e-6f), "two codes used equally");
        Assert.That(counts.equal(before).all().item<bool>(), Is.True);
        Assert.That(CodebookUsage.Perplexity(zeros(4)).item<float>(), Is.EqualTo(1f), "nothing counted: 1");
    }
}
