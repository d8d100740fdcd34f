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

    /// <summary>Label for the results table (BenchmarkDotNet cuts long labels): model and batch.</summary>
    public override string ToString() => $"{Model} B={Batch}";
}

/// <summary>Adds images/s and GFLOP/s columns to tables whose benchmarks take a <see cref="StepCase"/> parameter named <c>Case</c>.</summary>
public sealed class StepConfig : ManualConfig
{
    /// <summary>Registers the two columns.</summary>
    public StepConfig()
    {
        AddColumn(new StepCountColumn(floorSide: false), new StepCountColumn(floorSide: true),
            new StepRateColumn(perImage: true), new StepRateColumn(perImage: false));
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

/// <summary>The case's GEMM FLOP count (GFLOP) or the side n of the floor's square GEMM.</summary>
public sealed class StepCountColumn(bool floorSide) : IColumn
{
    /// <inheritdoc/>
    public string Id => floorSide ? "FloorSide" : "StepGflop";

    /// <inheritdoc/>
    public string ColumnName => floorSide ? "floor n" : "GFLOP";

    /// <inheritdoc/>
    public bool AlwaysShow => true;

    /// <inheritdoc/>
    public ColumnCategory Category => ColumnCategory.Params;

    /// <inheritdoc/>
    public int PriorityInCategory => floorSide ? 11 : 10;

    /// <inheritdoc/>
    public bool IsNumeric => true;

    /// <inheritdoc/>
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc/>
    public string Legend => floorSide ? "Side of the floor's square GEMM [n, n] x [n, n] (2 n^3 FLOPs)" : "GEMM FLOPs of the step (StepFlops), in 1e9";

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        => benchmarkCase.Parameters["Case"] is not StepCase c ? "-" : floorSide ? c.FloorSide.ToString() : (c.Flops / 1e9).ToString("F3");

    /// <inheritdoc/>
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc/>
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}
