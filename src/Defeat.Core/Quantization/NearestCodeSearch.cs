using Defeat.Validation;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Quantization;

/// <summary>
/// The nearest-codeword kernel of <see cref="VectorQuantizer"/>: for each row <c>z</c> of
/// <c>[M, D]</c> inputs, <c>argmin_k |z - e_k|^2 = argmin_k (|e_k|^2 - 2 z.e_k)</c>.
/// </summary>
/// <remarks>
/// One fused <c>addmm(|e|^2, z, e^T, beta: 1, alpha: -2)</c> per chunk of rows, then the row minimum.
/// On the CPU with one libtorch thread each chunk is a bare <c>mm</c> whose rows <see cref="RowArgMin"/> turns into
/// indices in one pass, bias included (the same scores and libtorch's <c>min(dim)</c> semantics, several times faster);
/// otherwise <c>min(dim)</c>, which also returns the first minimum on ties.
/// The <c>|z|^2</c> term is left out (it is the same for every code of a row), <c>|e|^2</c> is
/// computed once per call, and rows are processed in chunks so that the <c>[rows, K]</c> score
/// matrix stays bounded; the <c>[M, K, D]</c> broadcast is never formed. No gradient is recorded.
/// </remarks>
public static class NearestCodeSearch
{
    /// <summary>
    /// Rows per chunk such that one <c>[rows, K]</c> score matrix of <paramref name="elementSize"/>-byte
    /// elements takes at most <paramref name="maxBytes"/> bytes (at least one row).
    /// </summary>
    /// <param name="codebookSize">Number of codewords <c>K</c>.</param>
    /// <param name="elementSize">Bytes per element (4 for float32, 8 for float64).</param>
    /// <param name="maxBytes">Memory bound of one chunk's score matrix.</param>
    /// <returns>The chunk size in rows.</returns>
    public static long ChunkRows(long codebookSize, int elementSize, long maxBytes)
        => Math.Max(1, maxBytes / (codebookSize * elementSize));

    /// <summary>Bytes of one chunk of inner products that the CPU path keeps in a core's L2 cache.</summary>
    public const long CacheChunkBytes = 512 * 1024;

    /// <summary>
    /// Rows per chunk on the CPU: at most <paramref name="chunkRows"/>, and few enough that the chunk's inner products stay
    /// in L2 (<see cref="CacheChunkBytes"/>) between the GEMM that writes them and the pass that reads them, but never below
    /// 64 rows (smaller GEMMs take libtorch's matrix-vector path, slower and rounded differently).
    /// </summary>
    /// <param name="codebookSize">Number of codewords <c>K</c>.</param>
    /// <param name="elementSize">Bytes per element.</param>
    /// <param name="chunkRows">The caller's bound (memory).</param>
    /// <returns>The chunk size in rows.</returns>
    public static long CacheRows(long codebookSize, long elementSize, long chunkRows)
        => Math.Min(chunkRows, Math.Max(MinCacheRows, CacheChunkBytes / (codebookSize * elementSize)));

    /// <summary>Fewest rows of a cache-sized chunk (and of the last one, which takes the remainder below it).</summary>
    public const long MinCacheRows = 64;

    /// <summary>
    /// Finds the index of the nearest codeword for each row of <paramref name="inputs"/>.
    /// </summary>
    /// <param name="inputs"><c>[M, D]</c> float32 or float64 inputs (M may be 0).</param>
    /// <param name="codebook"><c>[K, D]</c> codewords, same dtype and device as <paramref name="inputs"/>.</param>
    /// <param name="distance">Euclidean: squared distance. Cosine: highest cosine similarity (codewords
    /// are normalised here; the inputs need not be, since a row's scale does not change its argmax).</param>
    /// <param name="chunkRows">Rows per chunk of the score matrix (see <see cref="ChunkRows"/>).</param>
    /// <returns><c>[M]</c> int64 indices on the inputs' device.</returns>
    /// <exception cref="ArgumentException">Shapes, dtypes or devices disagree.</exception>
    public static Tensor Find(Tensor inputs, Tensor codebook, QuantizerDistance distance, long chunkRows)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(codebook);
        TensorChecks.Require(inputs, inputs.dim() == 2, nameof(inputs), "[M, D]");
        TensorChecks.Require(codebook, codebook.dim() == 2 && codebook.shape[1] == inputs.shape[1], nameof(codebook), $"[K, {inputs.shape[1]}]");
        TensorChecks.Require(codebook, codebook.dtype == inputs.dtype, nameof(codebook), $"{inputs.dtype} like the inputs");
        TensorChecks.RequireDevice(codebook, inputs.device, nameof(codebook), "the inputs");
        OptionChecks.AtLeast(chunkRows, 1, nameof(chunkRows));

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        long m = inputs.shape[0];
        Tensor codes = codebook.detach();
        Tensor bias;
        if (distance == QuantizerDistance.Cosine)
        {
            // With unit codewords |e|^2 is the same for every code: the score is -2 z.e alone.
            codes = torch.nn.functional.normalize(codes, p: 2, dim: 1);
            bias = torch.zeros(codes.shape[0], dtype: codes.dtype, device: codes.device);
        }
        else
        {
            bias = codes.Square().sum(1);
        }
        // A transposed view: mm and addmm pass it to GEMM as a transpose flag, no copy.
        Tensor codesT = codes.t();

        // On one CPU thread the bias and the row minimum are one pass over each cache-sized chunk's inner products
        // (RowArgMin). With more libtorch threads the single-threaded pass and the smaller GEMMs lose to addmm + min,
        // both parallel (docs/benchmarks.md), so that path stays.
        bool fused = inputs.device_type == DeviceType.CPU && torch.get_num_threads() == 1 && bias.is_contiguous() && m * codes.shape[0] > 0;
        long step = fused ? CacheRows(codes.shape[0], inputs.element_size(), chunkRows) : chunkRows;
        Tensor indices = torch.empty(m, dtype: ScalarType.Int64, device: inputs.device);
        for (long start = 0, rows; start < m; start += rows)
        {
            using var chunkScope = torch.NewDisposeScope();
            rows = Math.Min(step, m - start);
            // A last chunk of a few rows would take libtorch's matrix-vector path: the chunk before takes them.
            if (fused && m - start - rows is > 0 and < MinCacheRows)
                rows = Math.Min(m - start, chunkRows);
            Tensor chunk = inputs.narrow(0, start, rows);
            Tensor? products = fused ? torch.mm(chunk, codesT) : null;
            if (products is not null && RowArgMin.Supports(products))
                RowArgMin.Into(products, bias, indices.narrow(0, start, rows));
            else
                indices.narrow(0, start, rows).copy_(torch.addmm(bias, chunk, codesT, beta: 1, alpha: -2).min(1).indexes);
        }
        return indices.MoveToOuterDisposeScope();
    }
}
