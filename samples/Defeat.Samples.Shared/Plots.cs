using Defeat.Checkpoints;
using ScottPlot;

namespace Defeat.Samples.Shared;

/// <summary>One curve of a plot: a method's robust accuracy against a swept quantity.</summary>
public sealed record Curve(string Label, IReadOnlyList<double> X, IReadOnlyList<double> Accuracy);

/// <summary>The sample's figure: robust accuracy against epsilon, and against PGD steps.</summary>
public static class Plots
{
    /// <summary>Writes a PNG with two panels side by side, atomically (temp file, then rename).</summary>
    public static void Write(string path, IReadOnlyList<Curve> byEpsilon, IReadOnlyList<Curve> bySteps, double stepsEpsilon)
    {
        var multi = new Multiplot();
        multi.AddPlots(2);
        multi.Layout = new ScottPlot.MultiplotLayouts.Columns();

        var left = multi.GetPlot(0);
        foreach (var c in byEpsilon)
            left.Add.ScatterLine(c.X.Select(e => e * 255).ToArray(), c.Accuracy.Select(a => a * 100).ToArray()).LegendText = c.Label;
        left.Title("Robust accuracy vs epsilon");
        left.XLabel("epsilon (x/255), L-inf");
        left.YLabel("robust accuracy (%)");
        left.Axes.SetLimitsY(0, 100);
        left.ShowLegend(Alignment.UpperRight);

        var right = multi.GetPlot(1);
        foreach (var c in bySteps)
            right.Add.ScatterLine(c.X.ToArray(), c.Accuracy.Select(a => a * 100).ToArray()).LegendText = c.Label;
        right.Title($"Robust accuracy vs PGD steps (eps {stepsEpsilon * 255:0.##}/255)");
        right.XLabel("PGD steps");
        right.YLabel("robust accuracy (%)");
        right.Axes.SetLimitsY(0, 100);
        right.ShowLegend(Alignment.UpperRight);

        AtomicFile.Write(path, temp => multi.SavePng(temp, 1400, 560));
    }
}
