using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Quantization;

/// <summary>Seeded k-means (k-means++ seeding, then Lloyd iterations) used to initialise a codebook.</summary>
internal static class KMeans
{
    /// <summary>Returns <c>[k, D]</c> centres of the rows of <paramref name="data"/> <c>[M, D]</c> (M &gt; 0).</summary>
    public static Tensor Fit(Tensor data, int k, int iterations, QuantizerDistance distance, long chunkRows, torch.Generator generator)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        long m = data.shape[0];
        Tensor centres = torch.empty(new long[] { k, data.shape[1] }, dtype: data.dtype, device: data.device);

        // k-means++: each next centre drawn with probability proportional to its squared distance
        // to the nearest centre so far, which spreads the seeds over well-separated clusters.
        long first = torch.randint(0, m, new long[] { 1 }, generator: generator).item<long>();
        centres[0] = data[first];
        Tensor nearest = (data - data[first]).Square().sum(1);
        for (int c = 1; c < k; c++)
        {
            using var step = torch.NewDisposeScope();
            Tensor weights = nearest.to(torch.CPU).to_type(ScalarType.Float64);
            long pick = weights.sum().item<double>() > 0
                ? torch.multinomial(weights, 1, generator: generator).item<long>()
                : torch.randint(0, m, new long[] { 1 }, generator: generator).item<long>();
            centres[c] = data[pick];
            nearest.copy_(torch.minimum(nearest, (data - data[pick]).Square().sum(1)));
        }

        for (int iteration = 0; iteration < iterations; iteration++)
        {
            using var step = torch.NewDisposeScope();
            Tensor assign = NearestCodeSearch.Find(data, centres, distance, chunkRows);
            Tensor sums = torch.zeros_like(centres).IndexAdd_(0, assign, data);
            Tensor counts = torch.bincount(assign, minlength: k).to_type(data.dtype).unsqueeze(1);
            // An empty cluster keeps its centre.
            Tensor updated = torch.where(counts.Gt(0), sums / counts.ClampMin(1), centres);
            if (distance == QuantizerDistance.Cosine)
                updated = torch.nn.functional.normalize(updated, p: 2, dim: 1);
            centres.copy_(updated);
        }
        return centres.MoveToOuterDisposeScope();
    }
}
