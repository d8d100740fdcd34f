using Defeat.Quantization;
using Defeat.Training;
using static Defeat.Tests.Quantization.Reference;

namespace Defeat.Tests.Quantization;

/// <summary>Codebook changes in training mode: EMA update, k-means initialisation, dead-code restart.</summary>
public class VectorQuantizerTrainingTests
{
    private static Tensor RandomInput(long[] shape, long seed)
        => randn(shape, dtype: ScalarType.Float64, generator: new Generator((ulong)seed));

    private static VectorQuantizer Ema(int k, int d, double decay = 0.9)
    {
        var vq = new VectorQuantizer(new VectorQuantizerOptions
        {
            CodebookSize = k, Dim = d, InitScale = 1.5, Seed = 2,
            CodebookUpdate = CodebookUpdate.ExponentialMovingAverage, Decay = decay, Epsilon = 1e-3,
        });
        vq.to(ScalarType.Float64);
        return vq;
    }

    [Test]
    public void EmaModeKeepsTheCodebookInBuffersNotParameters()
    {
        using var scope = NewDisposeScope();
        using var vq = Ema(5, 3);
        Assert.That(vq.parameters().Count(), Is.EqualTo(0));
        Assert.That(vq.state_dict().Keys, Is.EquivalentTo(new[] { "weight", "cluster_size", "embed_avg" }));
        Assert.That(vq.Codebook.requires_grad, Is.False);
    }

    [Test]
    public void EmaStepMatchesAHandComputation()
    {
        using var scope = NewDisposeScope();
        const int K = 6, D = 3, M = 20;
        const double decay = 0.9, eps = 1e-3;
        using var vq = Ema(K, D, decay);
        var w0 = Rows(vq.Codebook.clone());
        var z = RandomInput([M, D], 21);
        vq.train();
        using var output = vq.Quantize(z);

        // The step uses the assignment to the codebook before the update.
        var rows = Rows(z);
        var indices = NearestEuclidean(rows, w0);
        Assert.That(Longs(output.Indices), Is.EqualTo(indices));
        var clusterSize = new double[K];
        var embedAvg = new double[K][];
        for (int k = 0; k < K; k++)
        {
            double count = indices.Count(i => i == k);
            clusterSize[k] = decay * 1.0 + (1 - decay) * count; // buffers start at cluster size 1, embed_avg = w0
            embedAvg[k] = new double[D];
            for (int j = 0; j < D; j++)
            {
                double sum = 0;
                for (int i = 0; i < M; i++) if (indices[i] == k) sum += rows[i][j];
                embedAvg[k][j] = decay * w0[k][j] + (1 - decay) * sum;
            }
        }
        double n = clusterSize.Sum();
        var expected = new List<double>();
        for (int k = 0; k < K; k++)
        {
            double smoothed = (clusterSize[k] + eps) / (n + K * eps) * n;
            expected.AddRange(embedAvg[k].Select(v => v / smoothed));
        }
        var state = vq.state_dict();
        Assert.That(Doubles(state["cluster_size"]), Is.EqualTo(clusterSize).Within(1e-12));
        Assert.That(Doubles(state["embed_avg"]), Is.EqualTo(embedAvg.SelectMany(r => r)).Within(1e-12));
        Assert.That(Doubles(vq.Codebook), Is.EqualTo(expected).Within(1e-12));
        Assert.That(indices.Distinct().Count(), Is.GreaterThan(2), "the test needs several codes in use");
    }

    [Test]
    public void EvalModeNeverChangesTheCodebook()
    {
        using var scope = NewDisposeScope();
        using var ema = Ema(6, 3);
        using var restarting = new VectorQuantizer(new VectorQuantizerOptions
        { CodebookSize = 6, Dim = 3, DeadCodeThreshold = 5, KMeansInit = true, Seed = 1 });
        ema.eval();
        restarting.eval();
        var before = Doubles(ema.Codebook);
        var beforeRestarting = Doubles(restarting.Codebook);
        for (int i = 0; i < 3; i++)
        {
            using var a = ema.Quantize(RandomInput([20, 3], 30 + i));
            using var b = restarting.Quantize(RandomInput([20, 3], 30 + i).to_type(ScalarType.Float32));
        }
        Assert.That(Doubles(ema.Codebook), Is.EqualTo(before));
        Assert.That(Doubles(restarting.Codebook), Is.EqualTo(beforeRestarting));
        Assert.That(Doubles(ema.state_dict()["cluster_size"]), Is.All.EqualTo(1.0));
    }

    [Test]
    public void KMeansInitPutsTheCodesOnTheClusterMeans()
    {
        using var scope = NewDisposeScope();
        const int K = 4, D = 3, PerCluster = 25;
        double[][] centres = [[10, 0, 0], [0, 10, 0], [0, 0, 10], [-10, -10, -10]];
        var noise = RandomInput([K * PerCluster, D], 40).Times(0.3);
        var points = tensor(centres.SelectMany(c => Enumerable.Repeat(c, PerCluster).SelectMany(v => v)).ToArray())
            .reshape(K * PerCluster, D).Plus(noise);
        using var vq = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = K, Dim = D, KMeansInit = true, Seed = 9 });
        vq.to(ScalarType.Float64);
        vq.train();
        using var output = vq.Quantize(points);

        var rows = Rows(points);
        var means = Enumerable.Range(0, K).Select(c =>
            Enumerable.Range(0, D).Select(j => rows.Skip(c * PerCluster).Take(PerCluster).Average(r => r[j])).ToArray()).ToArray();
        var codes = Rows(vq.Codebook);
        foreach (var mean in means)
            Assert.That(codes.Min(code => SquaredDistance(code, mean)), Is.LessThan(1e-20), "a code sits on every cluster mean");
        Assert.That(Longs(output.UsageCounts), Is.All.EqualTo(PerCluster));
        Assert.That(vq.state_dict()["initialized"].item<double>(), Is.EqualTo(1.0));

        // Only the first training batch initialises.
        var after = Doubles(vq.Codebook);
        using var second = vq.Quantize(points.Times(3));
        Assert.That(Doubles(vq.Codebook), Is.EqualTo(after));
    }

    [Test]
    public void DeadCodesRestartOnInputsOfTheBatch()
    {
        using var scope = NewDisposeScope();
        const int K = 8, D = 4;
        // Decay 0.5: an unused code's usage falls from 1 to 0.5 < 0.6; a used one stays >= 1.
        using var vq = new VectorQuantizer(new VectorQuantizerOptions
        { CodebookSize = K, Dim = D, DeadCodeThreshold = 0.6, Decay = 0.5, Seed = 4 });
        vq.to(ScalarType.Float64);
        vq.train();
        var before = Rows(vq.Codebook.clone());
        var z = RandomInput([12, D], 50).Plus(5); // far from all codes: a few codes take everything
        using var output = vq.Quantize(z);

        var usage = Longs(output.UsageCounts);
        var after = Rows(vq.Codebook);
        var inputs = Rows(z);
        var restarted = new List<double[]>();
        for (int k = 0; k < K; k++)
        {
            if (usage[k] > 0)
                Assert.That(after[k], Is.EqualTo(before[k]), $"used code {k} is left alone");
            else
            {
                Assert.That(inputs.Any(row => row.SequenceEqual(after[k])), Is.True, $"dead code {k} sits on an input");
                restarted.Add(after[k]);
            }
        }
        Assert.That(restarted, Has.Count.GreaterThan(1));
        Assert.That(restarted.Select(r => string.Join(",", r)).Distinct().Count(), Is.EqualTo(restarted.Count), "distinct inputs");
        var clusterSize = Doubles(vq.state_dict()["cluster_size"]);
        for (int k = 0; k < K; k++)
            Assert.That(clusterSize[k], Is.EqualTo(usage[k] > 0 ? 0.5 + 0.5 * usage[k] : 0.6).Within(1e-12));
    }

    [Test]
    public void SameSeedGivesTheSameTrainingTrajectory()
    {
        using var scope = NewDisposeScope();
        var options = new VectorQuantizerOptions
        { CodebookSize = 8, Dim = 4, KMeansInit = true, DeadCodeThreshold = 0.95, CodebookUpdate = CodebookUpdate.ExponentialMovingAverage, Seed = 11 };
        double[] Run()
        {
            using var vq = new VectorQuantizer(options);
            vq.train();
            for (int i = 0; i < 3; i++)
            {
                using var o = vq.Quantize(randn([12, 4], generator: new Generator((ulong)(60 + i))));
            }
            return Doubles(vq.Codebook);
        }
        var first = Run();
        var second = Run();
        Assert.That(second, Is.EqualTo(first));
    }

    [Test]
    public void GradientModeCodebookLearnsFromTheCodebookLossWithAnOptimizer()
    {
        using var scope = NewDisposeScope();
        using var vq = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 1, Dim = 2 });
        vq.train();
        var z = tensor(new float[] { 1, 2, 3, 4 }).reshape(2, 2);
        using var optimizer = new MomentumSgd(vq.parameters(), learningRate: 1.0, momentum: 0);
        for (int i = 0; i < 200; i++)
        {
            using var step = NewDisposeScope();
            optimizer.ZeroGrad();
            using var output = vq.Quantize(z);
            output.CodebookLoss.backward();
            optimizer.Step();
        }
        // A single code minimising mean squared distance converges to the mean of the inputs.
        Assert.That(Doubles(vq.Codebook), Is.EqualTo(new[] { 2.0, 3.0 }).Within(1e-4));
    }
}
