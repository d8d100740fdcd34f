using System.Numerics;
using Defeat.Evaluation;

namespace Defeat.Tests.Evaluation;

public class StudyStatisticsTests
{
    [Test]
    public void MeanIntervalIsTheStudentTIntervalWorkedByHand()
    {
        // 1, 2, 3: mean 2, sample sd 1, se 1/sqrt(3); t(0.975, 2) = 4.303 -> half width 4.303 / sqrt(3) = 2.48434.
        var interval = StudyStatistics.MeanInterval([1, 2, 3]);
        Assert.That(interval.Mean, Is.EqualTo(2).Within(1e-12));
        Assert.That(interval.HalfWidth, Is.EqualTo(4.303 / Math.Sqrt(3)).Within(1e-9));
        Assert.That(interval.Lower, Is.EqualTo(2 - 4.303 / Math.Sqrt(3)).Within(1e-9));
        Assert.That(interval.Count, Is.EqualTo(3));

        var one = StudyStatistics.MeanInterval([0.7]);
        Assert.That((one.Mean, one.Lower, one.Upper), Is.EqualTo((0.7, 0.7, 0.7)));
        Assert.Throws<ArgumentException>(() => StudyStatistics.MeanInterval([]));
        Assert.Throws<ArgumentException>(() => StudyStatistics.MeanInterval([1, double.NaN]));
    }

    [Test]
    public void StudentQuantileFollowsTheTableAndTendsToTheNormal()
    {
        Assert.That(StudyStatistics.StudentT95(1), Is.EqualTo(12.706));
        Assert.That(StudyStatistics.StudentT95(30), Is.EqualTo(2.042));
        // Exact values: t(0.975, 60) = 2.0003, t(0.975, 120) = 1.9799.
        Assert.That(StudyStatistics.StudentT95(60), Is.EqualTo(2.0003).Within(0.002));
        Assert.That(StudyStatistics.StudentT95(120), Is.EqualTo(1.9799).Within(0.002));
        Assert.Throws<ArgumentOutOfRangeException>(() => StudyStatistics.StudentT95(0));
    }

    [TestCase(0, 5, 2.0 / 32)]            // 2 * (1/2)^5
    [TestCase(1, 9, 22.0 / 1024)]         // 2 * (C(10,0) + C(10,1)) / 2^10
    [TestCase(7, 3, 352.0 / 1024)]        // 2 * (1 + 10 + 45 + 120) / 2^10, symmetric in b and c
    [TestCase(5, 5, 1.0)]                 // capped at 1
    [TestCase(0, 0, 1.0)]                 // no discordant pair
    public void McNemarExactMatchesHandComputation(int onlyA, int onlyB, double expected) =>
        Assert.That(StudyStatistics.McNemarExactP(onlyA, onlyB), Is.EqualTo(expected).Within(1e-12));

    [Test]
    public void McNemarExactMatchesBruteForceBinomialForLargeCounts()
    {
        foreach (var (b, c) in new[] { (40, 70), (300, 360), (1000, 1100) })
        {
            int n = b + c, k = Math.Min(b, c);
            BigInteger sum = 0, binomial = 1;
            for (int i = 0; i <= k; i++)
            {
                sum += binomial;
                binomial = binomial * (n - i) / (i + 1);
            }
            // 2 * sum / 2^n with exact integers, then to double through the ratio of logs.
            double expected = Math.Min(1, Math.Exp(BigInteger.Log(sum * 2) - n * Math.Log(2)));
            Assert.That(StudyStatistics.McNemarExactP(b, c), Is.EqualTo(expected).Within(expected * 1e-9 + 1e-300), $"b={b}, c={c}");
        }
    }

    [Test]
    public void PairedComparisonCountsDiscordantPairsAndGivesTheWaldInterval()
    {
        bool[] a = [true, true, false, true, false];
        bool[] b = [false, true, true, false, false];
        var comparison = StudyStatistics.Compare(a, b);
        // Only A: images 0 and 3; only B: image 2. d = (2 - 1) / 5 = 0.2; Var = (3 - 1/5) / 25.
        Assert.That((comparison.OnlyA, comparison.OnlyB, comparison.Images), Is.EqualTo((2, 1, 5)));
        Assert.That(comparison.Difference.Mean, Is.EqualTo(0.2).Within(1e-12));
        Assert.That(comparison.Difference.HalfWidth, Is.EqualTo(1.96 * Math.Sqrt(2.8) / 5).Within(1e-12));
        Assert.That(comparison.McNemarP, Is.EqualTo(1.0)); // 2 * (1 + 3) / 8 = 1
        Assert.Throws<ArgumentException>(() => StudyStatistics.Compare(a, b[..4]));
    }
}
