namespace Defeat.Tests.Quantization;

/// <summary>Plain-loop reference computations the quantizer tests compare against.</summary>
internal static class Reference
{
    /// <summary>Rows of a [rows, cols] tensor as double arrays.</summary>
    public static double[][] Rows(Tensor t)
    {
        using var scope = NewDisposeScope();
        var flat = t.detach().cpu().to_type(ScalarType.Float64).contiguous().data<double>().ToArray();
        long rows = t.shape[0], cols = t.shape[1];
        var result = new double[rows][];
        for (long r = 0; r < rows; r++)
            result[r] = flat.AsSpan((int)(r * cols), (int)cols).ToArray();
        return result;
    }

    public static double SquaredDistance(double[] a, double[] b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++)
            s += (a[i] - b[i]) * (a[i] - b[i]);
        return s;
    }

    public static double[] Unit(double[] a)
    {
        double norm = Math.Sqrt(a.Sum(v => v * v));
        return a.Select(v => v / Math.Max(norm, 1e-12)).ToArray();
    }

    /// <summary>Brute-force nearest code by squared Euclidean distance (first minimum on ties).</summary>
    public static long[] NearestEuclidean(double[][] z, double[][] codes)
        => z.Select(row =>
        {
            long best = 0;
            double bestDistance = double.PositiveInfinity;
            for (int k = 0; k < codes.Length; k++)
            {
                double d = SquaredDistance(row, codes[k]);
                if (d < bestDistance) { bestDistance = d; best = k; }
            }
            return best;
        }).ToArray();

    /// <summary>Brute-force code of highest cosine similarity.</summary>
    public static long[] HighestCosine(double[][] z, double[][] codes)
        => z.Select(row =>
        {
            var u = Unit(row);
            long best = 0;
            double bestCos = double.NegativeInfinity;
            for (int k = 0; k < codes.Length; k++)
            {
                var c = Unit(codes[k]);
                double cos = 0;
                for (int i = 0; i < u.Length; i++) cos += u[i] * c[i];
                if (cos > bestCos) { bestCos = cos; best = k; }
            }
            return best;
        }).ToArray();

    public static long[] Longs(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.cpu().reshape(-1).data<long>().ToArray();
    }

    public static double[] Doubles(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().cpu().to_type(ScalarType.Float64).reshape(-1).data<double>().ToArray();
    }
}
