using Defeat;
using Defeat.Quantization;
using Defeat.Tests.Reliability;

namespace Defeat.Tests.Quantization;

/// <summary>
/// <see cref="RowArgMin"/> against what it replaces on the CPU, libtorch's <c>addmm(bias, ., ., 1, -2).min(dim: 1)</c>
/// indices: random rows of every length around the SIMD width, rows full of ties, NaN, infinities and signed zeros.
/// </summary>
public class RowArgMinTests
{
    // Reference and kernel see the same inner products s; the score is bias - 2 s. With a zero bias the
    // score row is -2 s, so the rows below are written as s = -score / 2 (exact) to state them as scores.
    private static long[] Reference(Tensor products, Tensor bias)
        => (bias.unsqueeze(0) - products.Times(2)).min(1).indexes.data<long>().ToArray();

    private static long[] Kernel(Tensor products, Tensor bias)
    {
        Assert.That(RowArgMin.Supports(products), Is.True);
        var indices = empty(products.shape[0], dtype: ScalarType.Int64);
        RowArgMin.Into(products, bias, indices);
        return indices.data<long>().ToArray();
    }

    private static Tensor FromScores(Tensor scores) => scores.Times(-0.5);

    [Test]
    public void MatchesLibtorchOnRandomRowsOfEveryLength(
        [Values(ScalarType.Float32, ScalarType.Float64)] ScalarType dtype,
        [Values(1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 512, 513)] int k)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)k);
        var products = randn(new long[] { 64, k }, dtype: dtype, generator: generator);
        var bias = rand(new long[] { k }, dtype: dtype, generator: generator).Times(3);
        Assert.That(Kernel(products, bias), Is.EqualTo(Reference(products, bias)));
    }

    [Test]
    public void TiesGoToTheFirstMinimumAsInLibtorch([Values(ScalarType.Float32, ScalarType.Float64)] ScalarType dtype)
    {
        // Scores from {0, 1, 2}: every row has many copies of its minimum, at every lane position.
        using var scope = NewDisposeScope();
        var products = randint(0, 3, new long[] { 200, 77 }, generator: new Generator(5)).to_type(dtype);
        var bias = randint(0, 2, new long[] { 77 }, generator: new Generator(6)).to_type(dtype).Times(2);
        Assert.That(Kernel(products, bias), Is.EqualTo(Reference(products, bias)));
        // And a hand-made row of scores: minimum -1 at 20 and 40 of 48.
        var row = zeros(1, 48, dtype: dtype);
        row[0, 20] = tensor(-1.0, dtype: dtype);
        row[0, 40] = tensor(-1.0, dtype: dtype);
        Assert.That(Kernel(FromScores(row), zeros(48, dtype: dtype)), Is.EqualTo(new long[] { 20 }));
    }

    [Test]
    public void NanInfinityAndSignedZeroFollowLibtorch([Values(ScalarType.Float32, ScalarType.Float64)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var rows = new List<double[]>
        {
            Row(40, (3, double.NaN)),                              // NaN in the first block
            Row(40, (37, double.NaN), (5, -2)),                    // NaN in the tail, a smaller value before it
            Row(40, (11, double.NaN), (29, double.NaN)),           // two NaNs: the first
            Row(40, (8, double.NegativeInfinity), (30, -1e300)),   // -inf wins
            Row(40, (0, 0.0), (1, -0.0)),                          // +0 then -0 in a row of ones: the first zero
            Row(40, (6, -0.0), (9, 0.0)),                          // -0 then +0: the first zero
            Row(40, (39, -3)),                                     // the last element (the overlapping tail)
        };
        var products = FromScores(tensor(rows.SelectMany(r => r).ToArray(), new long[] { rows.Count, 40 }).to_type(dtype));
        var bias = zeros(40, dtype: dtype);
        long[] expected = Reference(products, bias);
        Assert.That(Kernel(products, bias), Is.EqualTo(expected));
        Assert.That(expected, Is.EqualTo(new long[] { 3, 37, 11, 8, 0, 6, 39 }), "libtorch's own reading of these rows");
    }

    [Test]
    public void BothVectorWidthsGiveLibtorchsIndices([Values(256, 512)] int bits, [Values(8, 16, 40, 64, 65, 130, 512)] int k)
    {
        // Only one width runs on a given machine; both must agree with libtorch where the hardware has them.
        if (bits == 512 && !System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated)
            Assert.Ignore("no AVX-512 here: the 512-bit path is not taken on this machine");
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)(bits + k));
        // Values from a small set: ties everywhere, so the first-position pass is exercised at every lane.
        var products = randint(0, 5, new long[] { 50, k }, generator: generator).to_type(ScalarType.Float32);
        var bias = randint(0, 3, new long[] { k }, generator: generator).to_type(ScalarType.Float32);
        long[] expected = Reference(products, bias);
        float[] p = products.data<float>().ToArray(), b = bias.data<float>().ToArray();
        long[] found = Enumerable.Range(0, 50).Select(r => (long)RowArgMin.RowAtWidth<float>(p.AsSpan(r * k, k), b, bits)).ToArray();
        Assert.That(found, Is.EqualTo(expected));
    }

    [Test]
    public void NarrowedOutputRowsAreWrittenInPlace()
    {
        // NearestCodeSearch writes each chunk into a narrowed view of the whole index vector.
        using var scope = NewDisposeScope();
        var products = randn(new long[] { 10, 50 }, generator: new Generator(2));
        var bias = rand(50);
        var indices = ScalarOps.Full(new long[] { 20 }, -7L, ScalarType.Int64);
        RowArgMin.Into(products, bias, indices.narrow(0, 5, 10));
        long[] all = indices.data<long>().ToArray();
        Assert.That(all[..5], Is.All.EqualTo(-7L));
        Assert.That(all[15..], Is.All.EqualTo(-7L));
        Assert.That(all[5..15], Is.EqualTo(Reference(products, bias)));
    }

    [Test]
    public void NonContiguousOrIntegerScoresAreLeftToLibtorch()
    {
        using var scope = NewDisposeScope();
        Assert.That(RowArgMin.Supports(randn(8, 6).t()), Is.False);
        Assert.That(RowArgMin.Supports(ones(4, 4, dtype: ScalarType.Int32)), Is.False);
        Assert.That(RowArgMin.Supports(randn(4)), Is.False);
    }

    [Test]
    public void TheFusedScoresAreTheNumbersAddmmComputes(
        [Values(ScalarType.Float32, ScalarType.Float64)] ScalarType dtype, [Values(32, 256)] int dim)
    {
        // What makes the fused search return addmm's indices: bias - (s + s) equals addmm(bias, z, e^T, 1, -2)
        // element by element on the CPU (alpha = -2 is exact; the GEMM's epilogue rounds once, as here).
        using var scope = NewDisposeScope();
        var generator = new Generator(9);
        var z = randn(new long[] { 300, dim }, dtype: dtype, generator: generator);
        var codes = randn(new long[] { 512, dim }, dtype: dtype, generator: generator);
        var bias = codes.Square().sum(1);
        var products = mm(z, codes.t());
        var fused = (bias.unsqueeze(0) - products.Plus(products));
        Assert.That(fused.equal(addmm(bias, z, codes.t(), beta: 1, alpha: -2)).all().item<bool>(), Is.True);
        Assert.That(NearestCodeSearch.Find(z, codes, QuantizerDistance.Euclidean, 64).data<long>().ToArray(),
            Is.EqualTo(addmm(bias, z, codes.t(), beta: 1, alpha: -2).min(1).indexes.data<long>().ToArray()));
    }

    [Test]
    public void AChunksInnerProductsAreThoseOfTheWholeMatrix(
        [Values(ScalarType.Float32, ScalarType.Float64)] ScalarType dtype, [Values(32, 256)] int dim, [Values(64, 100, 128, 1000)] int rows)
    {
        // The search cuts the rows into chunks of at least 64 that fit the cache: a chunk's products must be the same
        // numbers as the corresponding rows of one whole product, so the cache-sized chunks change no index. (Chunks of
        // a few rows take libtorch's matrix-vector path, whose sums can round differently: hence the floor of 64.)
        using var scope = NewDisposeScope();
        var generator = new Generator(11);
        var z = randn(new long[] { 1568, dim }, dtype: dtype, generator: generator);
        var codes = randn(new long[] { 512, dim }, dtype: dtype, generator: generator);
        var whole = mm(z, codes.t());
        for (long start = 0; start < 1568; start += rows)
        {
            long count = Math.Min(rows, 1568 - start);
            Assert.That(mm(z.narrow(0, start, count), codes.t()).equal(whole.narrow(0, start, count)).all().item<bool>(), Is.True, $"rows {start}..{start + count}");
        }
    }

    [Test]
    public void OnOneThreadTheSearchGivesAddmmsIndicesWhateverTheRowCount([Values(1, 63, 64, 255, 256, 257, 319, 320, 1000, 1568)] int m)
    {
        // The cache-sized chunks (256 rows at K = 512) and the last chunk, which takes a remainder under 64 rows
        // rather than leave it to libtorch's matrix-vector path, must leave every index as one whole addmm + min gives it.
        using var one = new SingleThreaded();
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)m);
        var z = randn(new long[] { m, 32 }, generator: generator).Times(30);
        var codes = randn(new long[] { 512, 32 }, generator: generator).Times(0.01);
        var bias = codes.Square().sum(1);
        long[] expected = addmm(bias, z, codes.t(), beta: 1, alpha: -2).min(1).indexes.data<long>().ToArray();
        long[] found = NearestCodeSearch.Find(z, codes, QuantizerDistance.Euclidean, 1L << 40).data<long>().ToArray();
        Assert.That(found, Is.EqualTo(expected));
    }

    [Test]
    public void NearestCodeSearchGivesTheBruteForceNearestCodeAtEveryChunkSize([Values(1L, 7L, 64L, 1000L)] long chunkRows, [Values(1, 2)] int threads)
    {
        // One libtorch thread takes RowArgMin, two take addmm + min: both must find the nearest code.
        using var count = new TorchThreadCount(threads);
        NearestCodeAgrees(chunkRows);
    }

    private static void NearestCodeAgrees(long chunkRows)
    {
        // The whole search against the distances written out, |z - e|^2 for every pair, in float64.
        using var scope = NewDisposeScope();
        var generator = new Generator(3);
        var z = randn(new long[] { 150, 12 }, dtype: ScalarType.Float64, generator: generator);
        var codebook = randn(new long[] { 40, 12 }, dtype: ScalarType.Float64, generator: generator);
        var distances = (z.unsqueeze(1) - codebook.unsqueeze(0)).Square().sum(2);
        long[] expected = distances.argmin(1).data<long>().ToArray();
        long[] found = NearestCodeSearch.Find(z, codebook, QuantizerDistance.Euclidean, chunkRows).data<long>().ToArray();
        Assert.That(found, Is.EqualTo(expected));
    }

    private static double[] Row(int length, params (int Index, double Value)[] set)
    {
        var row = Enumerable.Repeat(1.0, length).ToArray();
        foreach (var (index, value) in set)
            row[index] = value;
        return row;
    }
}
