using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Defeat.Benchmarks;

/// <summary>One step benchmark case: a model, a batch size and the step's GEMM FLOPs (see <see cref="StepFlops"/>).</summary>
/// <param name="Model">Model name (<see cref="BenchmarkModels"/>).</param>
/// <param name="Batch">Images per step.</param>
/// <param name="Flops">GEMM FLOPs of the step.</param>
public sealed record StepCase(string Model, int Batch, double Flops)
{
    /// <summary>Side of the square GEMM of the same FLOPs (the floor).</summary>
    public int FloorSide => StepFlops.SquareSide(Flops);

    /// <summary>Label for the results table: model, batch, GFLOP count, floor side.</summary>
    public override string ToString() => $"{Model} B={Batch} {Flops / 1e9:F2} GFLOP (n={FloorSide})";
}

/// <summary>Adds images/s and GFLOP/s columns to tables whose benchmarks take a <see cref="StepCase"/> parameter named <c>Case</c>.</summary>
public sealed class StepConfig : ManualConfig
{
    /// <summary>Registers the two columns.</summary>
    public StepConfig()
    {
        AddColumn(new StepRateColumn(perImage: true), new StepRateColumn(perImage: false));
    }
}

/// <summary>Images per second (batch / mean time) or GFLOP per second (the case's FLOPs / mean time).</summary>
public sealed class StepRateColumn(bool perImage) : IColumn
{
    /// <inheritdoc/>
    public string Id => perImage ? "ImagesPerSecond" : "GflopPerSecond";

    /// <inheritdoc/>
    public string ColumnName => perImage ? "img/s" : "GFLOP/s";

    /// <inheritdoc/>
    public bool AlwaysShow => true;

    /// <inheritdoc/>
    public ColumnCategory Category => ColumnCategory.Custom;

    /// <inheritdoc/>
    public int PriorityInCategory => perImage ? 0 : 1;

    /// <inheritdoc/>
    public bool IsNumeric => true;

    /// <inheritdoc/>
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc/>
    public string Legend => perImage ? "Images per second: batch / Mean (the floor's: what the step would reach at GEMM speed)"
        : "GEMM FLOPs of the step (StepFlops) / Mean";

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is null || benchmarkCase.Parameters["Case"] is not StepCase c) return "-";
        double seconds = report.ResultStatistics.Mean / 1e9;
        return perImage ? (c.Batch / seconds).ToString("F1") : (c.Flops / seconds / 1e9).ToString("F1");
    }

    /// <inheritdoc/>
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc/>
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}
