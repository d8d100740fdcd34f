using Defeat;
using Defeat.Quantization;
using Defeat.Tests.Reliability;

namespace Defeat.Tests.Quantization;

/// <summary>
/// <see cref="CodewordGather"/> against what it replaces in the quantizer's no-gradient forward, <c>index_select</c>
/// and <c>mse_loss</c>, and against a hand-worked case.
/// </summary>
public class CodewordGatherTests
{
    [Test]
    public void HandWorkedCase()
    {
        // Codes (0, 0) and (3, 4); rows (3, 4) -> code 1 (distance 0), (0, 1) -> code 0 (1), (1, 1) -> code 0 (2).
        // Mean over the 6 elements: (0 + 1 + 2) / 6 = 0.5.
        using var scope = NewDisposeScope();
        var codes = tensor(new float[] { 0, 0, 3, 4 }, new long[] { 2, 2 });
        var z = tensor(new float[] { 3, 4, 0, 1, 1, 1 }, new long[] { 3, 2 });
        var (picked, mse) = CodewordGather.PickWithError(codes, tensor(new long[] { 1, 0, 0 }), z);
        Assert.That(picked.data<float>().ToArray(), Is.EqualTo(new float[] { 3, 4, 0, 0, 0, 0 }));
        Assert.That(mse.item<float>(), Is.EqualTo(0.5f));
        Assert.That(mse.dim(), Is.EqualTo(0));
    }

    [Test]
    public void SameCodewordsAsIndexSelectAndTheMeanOfMseLoss(
        [Values(ScalarType.Float32, ScalarType.Float64)] ScalarType dtype, [Values(1, 7, 32, 256)] int dim)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)dim);
        var codes = randn(new long[] { 64, dim }, dtype: dtype, generator: generator);
        var z = randn(new long[] { 500, dim }, dtype: dtype, generator: generator);
        var indices = randint(0, 64, new long[] { 500 }, generator: generator);
        var (picked, mse) = CodewordGather.PickWithError(codes, indices, z);
        var expected = codes.index_select(0, indices);
        Assert.That(picked.equal(expected).all().item<bool>(), Is.True, "the codewords, bit for bit");
        double reference = nn.functional.mse_loss(z.to_type(ScalarType.Float64), expected.to_type(ScalarType.Float64)).item<double>();
        double tolerance = dtype == ScalarType.Float32 ? 1e-6 : 1e-13;
        Assert.That(mse.ToDouble(), Is.EqualTo(reference).Within(tolerance * reference));
        Assert.That(mse.dtype, Is.EqualTo(dtype));
    }

    [Test]
    public void AnIndexOutsideTheCodebookIsAnError()
    {
        using var scope = NewDisposeScope();
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => CodewordGather.PickWithError(zeros(4, 2), tensor(new long[] { 0, 4 }), zeros(2, 2)))!;
        Assert.That(error.Message, Does.Contain("[0, 4)"));
    }

    [Test]
    public void TheQuantizersNoGradientForwardKeepsItsMeaning([Values] QuantizerDistance distance, [Values(1, 2)] int threads)
    {
        // Under no_grad on one thread the quantizer takes this path (with two, libtorch's ops): either way its outputs
        // must be what the autograd path computes.
        using var count = new TorchThreadCount(threads);
        NoGradientForwardAgrees(distance);
    }

    private static void NoGradientForwardAgrees(QuantizerDistance distance)
    {
        using var scope = NewDisposeScope();
        using var quantizer = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 16, Dim = 8, InitScale = 1.0, Distance = distance, CommitmentWeight = 0.25 });
        quantizer.eval();
        var z = randn(new long[] { 3, 10, 8 }, generator: new Generator(4));
        QuantizerOutput fast;
        using (no_grad())
            fast = quantizer.Quantize(z);
        var slow = quantizer.Quantize(z.clone().requires_grad_(true));
        Assert.That(fast.Indices.equal(slow.Indices).all().item<bool>(), Is.True);
        Assert.That(fast.Quantized.equal(slow.Quantized.detach()).all().item<bool>(), Is.True);
        Assert.That(fast.CodebookLoss.item<float>(), Is.EqualTo(slow.CodebookLoss.item<float>()).Within(1e-4).Percent);
        Assert.That(fast.CommitmentLoss.item<float>(), Is.EqualTo(slow.CommitmentLoss.item<float>()).Within(1e-4).Percent);
        Assert.That(fast.CommitmentLoss.item<float>(), Is.EqualTo(0.25f * fast.CodebookLoss.item<float>()).Within(1e-4).Percent);
    }
}
